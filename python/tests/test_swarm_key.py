"""The swarm key (docs/security.md): a keyed server in a child process serves its members and
refuses this (keyless) process with a clear error. The key is per process, so every keyed side runs
in a child and this pytest process stays keyless."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hivemind_cpp as hivemind
from conftest import HIDDEN, server_kwargs


def write_key(path, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write("ab" * 32 + "\n")
    os.chmod(path, mode)
    return str(path)


def test_a_key_file_others_can_read_is_refused_naming_the_fix(tmp_path):
    key = write_key(tmp_path / "swarm.key", 0o644)
    with pytest.raises(hivemind.HivemindError, match="chmod 600"):
        hivemind.use_swarm_key_file(key)
    assert "HIVEMIND_SWARM_KEY_FILE" not in os.environ


def test_a_keyed_server_serves_members_and_refuses_strangers(tmp_path, child_servers):
    key = write_key(tmp_path / "swarm.key")
    server = child_servers(**server_kwargs(expert_uids=["ffn.0"], swarm_key_file=key))
    # This process has no key: refused at once with the reason, not after a timeout.
    stranger = hivemind.RemoteExpert("ffn.0", server.endpoint)
    with pytest.raises(hivemind.HivemindError, match="peer did not authenticate"):
        stranger(torch.randn(2, HIDDEN))
    # A member: another process with the same key.
    member = textwrap.dedent(f"""
        import torch, hivemind_cpp as hivemind
        hivemind.use_swarm_key_file({key!r})
        out = hivemind.RemoteExpert("ffn.0", {server.endpoint!r})(torch.randn(2, {HIDDEN}))
        print(tuple(out.shape))
    """)
    result = subprocess.run([sys.executable, "-c", member], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, HIVEMIND_SPIN_US="0"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(2, {HIDDEN})"
