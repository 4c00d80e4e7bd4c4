"""Shared fixtures of the hivemind_cpp test suites.

Run with the package importable (``PYTHONPATH=build/python``, as scripts/test.sh does). Servers run
in this process (Server.create) unless a test must kill one: those run in a child Python process
(``serve.py``), which prints its endpoints and serves until killed or its stdin closes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hivemind_cpp as hivemind

HIDDEN = 16
SEED = 1234
HERE = Path(__file__).resolve().parent


def server_kwargs(**overrides):
    """A small CPU server on loopback TCP, quick to start, exact on the wire."""
    kwargs = dict(listen_on="tcp://127.0.0.1:0", expert_cls="ffn", hidden_dim=HIDDEN,
                  optim_cls=None, compression="none", seed=SEED, cpu_bind="none",
                  max_batch_size=256, grace_period=5.0, start=True)
    kwargs.update(overrides)
    return kwargs


class ChildServer:
    """A Server.create in a child Python process (so that a test can SIGKILL it)."""

    def __init__(self, **kwargs):
        env = dict(os.environ, HIVEMIND_SPIN_US="0")
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "serve.py"), json.dumps(kwargs)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # bounded: serve.py prints or exits
        if not line.startswith("READY "):
            self.process.kill()
            raise RuntimeError(f"the child server did not start: {line!r}")
        info = json.loads(line[len("READY "):])
        self.endpoint, self.dht_address = info["endpoint"], info["dht"]

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


@pytest.fixture
def child_servers():
    started = []

    def start(**kwargs):
        child = ChildServer(**kwargs)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


@pytest.fixture(autouse=True)
def _no_busy_polling(monkeypatch):
    # The CI machine has two cores: no transport busy-polling in tests.
    monkeypatch.setenv("HIVEMIND_SPIN_US", "0")


@pytest.fixture
def server():
    with hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0", "ffn.1"])) as s:
        yield s


def local_expert(uid, expert_cls="ffn", hidden_dim=HIDDEN, seed=SEED):
    return hivemind._C._LocalExpert(expert_cls, hidden_dim, uid, seed)
