"""DHT: store/get and expert declarations, within a process and across two."""

import json
import subprocess
import sys
import textwrap

import pytest

import hivemind_cpp as hivemind
from hivemind_cpp import get_dht_time


@pytest.fixture
def pair():
    first = hivemind.DHT(listen_on="127.0.0.1:*")
    second = hivemind.DHT(initial_peers=[first.endpoint], listen_on="127.0.0.1:*")
    yield first, second
    second.shutdown()
    first.shutdown()


def test_store_and_get_round_trip_values(pair):
    first, second = pair
    expiration = get_dht_time() + 60
    assert first.store("plain", {"lr": 0.1, "steps": [1, 2]}, expiration)
    assert first.store("raw", b"\x00\xffbytes", expiration)
    got = second.get("plain")
    assert got.value == {"lr": 0.1, "steps": [1, 2]}
    assert abs(got.expiration_time - expiration) < 1e-3
    assert second.get("raw").value == b"\x00\xffbytes"
    assert second.get("missing") is None


def test_newer_value_wins_and_subkeys_form_a_dictionary(pair):
    first, second = pair
    now = get_dht_time()
    assert first.store("k", "new", now + 60)
    assert not second.store("k", "old", now + 30)
    assert second.get("k").value == "new"
    assert first.store("group", 1, now + 60, subkey="a")
    assert second.store("group", 2, now + 60, subkey="b")
    value = first.get("group").value
    assert {k: v.value for k, v in value.items()} == {"a": 1, "b": 2}


def test_declare_and_get_experts_across_two_processes(pair):
    first, _ = pair
    child = textwrap.dedent(f"""
        import json, sys
        import hivemind_cpp as hivemind
        dht = hivemind.DHT(initial_peers=[{first.endpoint!r}], listen_on="127.0.0.1:*")
        print(json.dumps(dht.declare_experts(["expert.0", "expert.1"], "tcp://10.1.2.3:4567")))
        print(json.dumps(dht.store("from-child", [1, 2, 3], hivemind.get_dht_time() + 60)))
        dht.shutdown()
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[0]) == {"expert.0": True, "expert.1": True}
    experts = first.get_experts(["expert.0", "expert.1", "expert.2"])
    assert [e.uid if e else None for e in experts] == ["expert.0", "expert.1", None]
    assert experts[0].endpoint == "tcp://10.1.2.3:4567"
    assert first.get("from-child").value == [1, 2, 3]


def test_bad_keys_and_values(pair):
    first, _ = pair
    with pytest.raises(TypeError):
        first.store(42, "v", get_dht_time() + 60)
    with pytest.raises(TypeError):
        first.store("k", object(), get_dht_time() + 60)
    with pytest.raises(ValueError):
        first.store("x" * 200, "v", get_dht_time() + 60)
    with pytest.raises(ValueError):
        first.store("k", "v", float("nan"))
    with pytest.raises(ValueError, match="not host:port"):
        first.declare_experts(["e.0"], "nonsense")


def test_unreachable_initial_peer_fails_with_its_reason():
    with pytest.raises(hivemind.HivemindError, match="127.0.0.1:1"):
        hivemind.DHT(initial_peers=["127.0.0.1:1"], listen_on="127.0.0.1:*",
                     bootstrap_timeout=2)


def test_shutdown_is_idempotent_and_later_calls_say_so(pair):
    first, _ = pair
    first.shutdown()
    first.shutdown()
    with pytest.raises(RuntimeError, match="not running"):
        first.get("k")
