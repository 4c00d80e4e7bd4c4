"""Ctrl-C in a trainer blocked on a remote expert interrupts it, long before the call's deadline."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import hivemind_cpp as hivemind
from conftest import HIDDEN, server_kwargs


def test_sigint_interrupts_a_forward_waiting_on_the_network():
    # The request waits for a batch of 64 that never fills; the trainer's deadline is an hour.
    with hivemind.Server.create(**server_kwargs(expert_uids=["ffn.0"], min_batch_size=64,
                                                batch_timeout=3600, grace_period=0.5)) as s:
        trainer = textwrap.dedent(f"""
            import signal, sys, torch
            import hivemind_cpp as hivemind
            # Python leaves SIGINT ignored when its parent ignored it (a shell's background job
            # does): the test needs Python's own handler, whatever started the suite.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            expert = hivemind.RemoteExpert("ffn.0", {s.endpoint!r}, forward_timeout=3600)
            try:
                expert(torch.randn(2, {HIDDEN}))
            except KeyboardInterrupt:
                print("INTERRUPTED", flush=True)
                sys.exit(0)
            print("RETURNED", flush=True)
            sys.exit(1)
        """)
        child = subprocess.Popen([sys.executable, "-c", trainer], stdout=subprocess.PIPE,
                                 text=True, env=dict(os.environ, HIVEMIND_SPIN_US="0"))
        try:
            # Until the request sits in the server's queue: the trainer is then inside the wait.
            give_up = time.monotonic() + 120
            while s.stats()[0]["queued_tasks"] == 0 and child.poll() is None:
                assert time.monotonic() < give_up, "the trainer's request never arrived"
                time.sleep(0.01)
            child.send_signal(signal.SIGINT)
            out, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0, out
        assert out.strip() == "INTERRUPTED"


def bytes_queued_at(port: int) -> int:
    """Bytes received but not yet read by the sockets listening or connected on local `port`."""
    total = 0
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            fields = row.split()
            local, queues = fields[1], fields[4]
            if int(local.split(":")[1], 16) == port:
                total += int(queues.split(":")[1], 16)
    return total


WAIT_THEN_REPORT = """
import signal, sys, torch
import hivemind_cpp as hivemind
# Python leaves SIGINT ignored when its parent ignored it (a shell's background job does): the
# test needs Python's own handler, whatever started the suite.
signal.signal(signal.SIGINT, signal.default_int_handler)
{setup}
print("READY", flush=True)
sys.stdin.readline()
try:
    {wait}
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    sys.exit(0)
except BaseException as e:
    print("RAISED", type(e).__name__, e, flush=True)
    sys.exit(1)
print("RETURNED", flush=True)
sys.exit(1)
"""


def interrupt_a_wait(setup: str, wait: str, server, port: int) -> str:
    """Runs `setup` in a child trainer while `server` (a ChildServer) is alive, freezes the server
    (SIGSTOP), lets the child run `wait`, waits until the child's request sits unread in the frozen
    server's socket on `port` (the child is then inside the wait), sends SIGINT, and returns what
    the child printed: INTERRUPTED, RAISED ... or RETURNED."""
    script = WAIT_THEN_REPORT.format(setup=setup, wait=wait)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             env=dict(os.environ, HIVEMIND_SPIN_US="0"))
    try:
        assert child.stdout.readline().strip() == "READY"
        server.process.send_signal(signal.SIGSTOP)
        queued_before = bytes_queued_at(port)
        child.stdin.write("go\n")
        child.stdin.flush()
        give_up = time.monotonic() + 120
        while bytes_queued_at(port) <= queued_before and child.poll() is None:
            assert time.monotonic() < give_up, "the request never reached the frozen server"
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)  # an uninterruptible wait would outlast this
        return out.strip()
    finally:
        server.process.send_signal(signal.SIGCONT)
        if child.poll() is None:
            child.kill()
            child.wait()


def test_sigint_interrupts_a_backward_waiting_on_the_network(child_servers):
    # The trainer's forward is answered; then the server is frozen, so the backward waits: SIGINT
    # must come out of loss.backward() as KeyboardInterrupt, through PyTorch's autograd engine.
    server = child_servers(**server_kwargs(expert_uids=["ffn.0"]))
    port = int(server.endpoint.rsplit(":", 1)[1])
    setup = (f"expert = hivemind.RemoteExpert('ffn.0', {server.endpoint!r}, backward_timeout=3600)\n"
             f"out = expert(torch.randn(2, {HIDDEN}, requires_grad=True))")
    assert interrupt_a_wait(setup, "out.sum().backward()", server, port) == "INTERRUPTED"


def test_sigint_interrupts_joining_a_dht_whose_peer_does_not_answer(child_servers):
    # Joining retries a silent peer until bootstrap_timeout (an hour here).
    server = child_servers(**server_kwargs(expert_uids=["ffn.0"]))
    port = int(server.dht_address.rsplit(":", 1)[1])
    wait = (f"hivemind.DHT(initial_peers=[{server.dht_address!r}], listen_on='127.0.0.1:*', "
            f"bootstrap_timeout=3600, request_timeout=3600)")
    assert interrupt_a_wait("", wait, server, port) == "INTERRUPTED"


def test_sigint_interrupts_fetching_an_experts_info(child_servers):
    # A RemoteExpert's first forward fetches the expert's info; the server answers another
    # expert's first (so the connection is up), then it is frozen.
    server = child_servers(**server_kwargs(expert_uids=["ffn.0", "ffn.1"]))
    port = int(server.endpoint.rsplit(":", 1)[1])
    setup = f"hivemind.RemoteExpert('ffn.1', {server.endpoint!r}).info"
    wait = (f"hivemind.RemoteExpert('ffn.0', {server.endpoint!r}, forward_timeout=3600)"
            f"(torch.randn(2, {HIDDEN}))")
    assert interrupt_a_wait(setup, wait, server, port) == "INTERRUPTED"


def test_sigint_interrupts_a_server_joining_the_dht_through_a_frozen_peer(child_servers):
    # Server.create joins the DHT before it serves; its peer is frozen, so the join waits (30 s
    # by default) and SIGINT must end it at once, leaving nothing of the half-built server behind.
    server = child_servers(**server_kwargs(expert_uids=["ffn.0"]))
    port = int(server.dht_address.rsplit(":", 1)[1])
    kwargs = server_kwargs(expert_uids=["late.0"], initial_peers=[server.dht_address])
    wait = f"hivemind.Server.create(**{kwargs!r})"
    assert interrupt_a_wait("", wait, server, port) == "INTERRUPTED"
