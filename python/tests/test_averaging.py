"""Averager: several peers average their tensors in place, through the DHT or from the launcher."""

import pytest
import torch

import hivemind_cpp as hivemind
from hivemind_cpp import Averager


def peer_tensors(i):
    """Peer i's copy: values that differ per peer, of two dtypes and odd sizes."""
    return [torch.arange(7, dtype=torch.float32) * (i + 1), torch.full((3, 5), float(10 * i)),
            torch.linspace(-1, 1, 11).to(torch.bfloat16) * (i + 1)]


def exact_means(n):
    copies = [peer_tensors(i) for i in range(n)]
    return [torch.stack([c[t].float() for c in copies]).mean(0) for t in range(len(copies[0]))]


def check_all_hold_the_mean(tensors_by_peer, n):
    for tensors in tensors_by_peer:
        for got, want in zip(tensors, exact_means(n)):
            if got.dtype == torch.bfloat16:
                assert torch.allclose(got.float(), want, rtol=1e-2, atol=1e-2), (got, want)
            else:
                assert torch.allclose(got, want, rtol=1e-6, atol=1e-6), (got, want)


@pytest.fixture
def dht():
    node = hivemind.DHT(listen_on="127.0.0.1:*")
    yield node
    node.shutdown()


def test_three_peers_through_the_dht_hold_the_mean(dht):
    tensors = [peer_tensors(i) for i in range(3)]
    averagers = [Averager(t, dht=dht, prefix="test.mean", min_matchmaking_time=5.0,
                          allreduce_timeout=30.0) for t in tensors]
    try:
        futures = [a.step(wait=False) for a in averagers]
        reports = [f.result(timeout=60) for f in futures]
        for report in reports:
            assert report.ok, report.failure
            assert report and report.backend == "transport"
            assert sorted(report.members) == sorted(a.endpoint for a in averagers)
        check_all_hold_the_mean(tensors, 3)
    finally:
        for a in averagers:
            a.shutdown()


def test_launcher_membership_with_rank_zero_leading(tmp_path):
    tensors = [peer_tensors(i) for i in range(2)]
    averagers = [Averager(t, launcher={"rank": i, "size": 2,
                                       "bootstrap_file": str(tmp_path / "leader")},
                          prefix="test.launcher", allreduce_timeout=30.0)
                 for i, t in enumerate(tensors)]
    try:
        futures = [a.step(wait=False) for a in averagers]
        reports = [f.result(timeout=60) for f in futures]
        assert all(r.ok for r in reports), [r.failure for r in reports]
        assert reports[0].members[0] == averagers[0].endpoint  # rank 0 leads
        check_all_hold_the_mean(tensors, 2)
    finally:
        for a in averagers:
            a.shutdown()


def test_a_peer_alone_keeps_its_tensors(dht):
    tensors = peer_tensors(4)
    before = [t.clone() for t in tensors]
    with Averager(tensors, dht=dht, prefix="test.alone", min_matchmaking_time=0.5) as averager:
        report = averager.step()
    assert report.ok and report.members == [averager.endpoint]
    for got, want in zip(tensors, before):
        assert torch.equal(got, want)
    assert not averager.is_alive
    averager.shutdown()  # idempotent


def test_refusals_name_what_is_wrong(dht, tmp_path):
    with pytest.raises(hivemind.HivemindError, match="tensor 1 is Long"):
        Averager([torch.zeros(3), torch.zeros(2, dtype=torch.int64)], dht=dht, prefix="test.bad")
    with pytest.raises(ValueError, match="exactly one"):
        Averager([torch.zeros(3)], prefix="test.bad")
    with pytest.raises(ValueError, match="exactly one"):
        Averager([torch.zeros(3)], dht=dht, launcher={"bootstrap_file": str(tmp_path / "x")},
                 prefix="test.bad")
    with pytest.raises(ValueError, match="compression"):
        Averager([torch.zeros(3)], dht=dht, prefix="test.bad", compression="zip")
    with pytest.raises(TypeError, match="torch.Tensor"):
        Averager([[1.0, 2.0]], dht=dht, prefix="test.bad")
