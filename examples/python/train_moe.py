#!/usr/bin/env python3
"""Trains a model with a RemoteMixtureOfExperts layer against expert servers: the Python twin of
``hivemind-demo`` (apps/demo/main.cc, run by scripts/demo.sh).

    model:  x -> Linear(32, 64) -> ReLU -> RemoteMixtureOfExperts(64, grid 4x4, k_best 4)
              -> Linear(64, 8)
    task:   the demo's synthetic 8-class task (two Gaussian clusters per class, 32 features)
    stops:  once the held-out accuracy (1024 samples) reaches --target-accuracy (0.95, as the demo),
            or after --steps; exits 0 only if it reached the target.

By default it starts the swarm itself, as scripts/demo.sh does: two ``build/bin/hivemind-server``
child processes hosting ``expert.[0:2].[0:4]`` and ``expert.[2:4].[0:4]`` (ffn experts, hidden 64,
Adam lr 1e-3); the first one starts the DHT, the second and this trainer join it. With
``--initial_peers`` it joins an existing swarm instead and starts nothing.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/train_moe.py
    PYTHONPATH=build/python /usr/bin/python3 examples/python/train_moe.py --kill-server-at 10
    PYTHONPATH=build/python /usr/bin/python3 examples/python/train_moe.py \\
        --initial_peers tcp://10.0.0.5:31337

Every wait has a deadline. Ctrl-C (or SIGTERM/SIGHUP) stops training and shuts the child servers
down (SIGTERM: they drain, then exit); they also get SIGTERM if this process dies without cleaning
up.
"""

import argparse
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

try:
    import hivemind_cpp as hivemind
except ImportError as e:
    sys.exit(f"train_moe: cannot import hivemind_cpp ({e}): build it (./scripts/build.sh), run "
             "it with PYTHONPATH=build/python /usr/bin/python3 (see docs/python.md)")

REPO = Path(__file__).resolve().parents[2]


class SyntheticTask:
    """The demo's task (apps/demo/synthetic_task.h), drawn the same way from the same seeds: each
    class owns two cluster centres (so the classes are not linearly separable); a sample is a
    centre plus Gaussian noise."""

    def __init__(self, features=32, classes=8, centres_per_class=2, centre_scale=1.0, noise=0.6,
                 seed=2026):
        self.features, self.classes, self.noise = features, classes, noise
        generator = torch.Generator().manual_seed(seed)
        self.centres = torch.randn(classes * centres_per_class, features,
                                   generator=generator) * centre_scale

    def batch(self, n, generator_seed):
        generator = torch.Generator().manual_seed(generator_seed)
        centre = torch.randint(self.centres.shape[0], (n,), generator=generator, dtype=torch.long)
        inputs = (self.centres.index_select(0, centre)
                  + torch.randn(n, self.features, generator=generator) * self.noise)
        return inputs, centre.remainder(self.classes)  # centres c and c + classes share a label


class Model(nn.Module):
    def __init__(self, dht, args, features, classes):
        super().__init__()
        self.input = nn.Linear(features, args.hidden_dim)
        self.experts = hivemind.RemoteMixtureOfExperts(
            in_features=args.hidden_dim, grid_size=args.grid, dht=dht, uid_prefix=args.uid_prefix,
            k_best=args.k_best, k_min=1, backward_k_min=1,
            forward_timeout=args.forward_timeout, backward_timeout=args.forward_timeout,
            timeout_after_k_min=args.timeout_after_k_min,
            allow_zero_outputs=True)  # a sample whose experts all died still trains the rest
        self.output = nn.Linear(args.hidden_dim, classes)

    def forward(self, x):
        return self.output(self.experts(torch.relu(self.input(x))))


# ---- the local swarm: hivemind-server child processes ----------------------------------------

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent():
    """In the child, before exec: SIGTERM when the trainer dies, even by SIGKILL (Linux)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class SwarmError(RuntimeError):
    """A local server did not start."""


class LocalSwarm:
    """Expert servers started as child processes, like scripts/demo.sh, and stopped on exit."""

    def __init__(self, log_dir):
        self.processes = []  # every child started, so that shutdown() finds them all
        self.log_dir = log_dir
        self.initial_peers = []

    def start(self, server_bin, hidden_dim, patterns, start_timeout):
        peers = []
        for i, pattern in enumerate(patterns):
            command = [server_bin, "--expert_cls", "ffn", "--hidden_dim", str(hidden_dim),
                       "--expert_pattern", pattern, "--max_batch_size", "4096",
                       "--optimizer", "adam", "--lr", "0.001",
                       "--host", "127.0.0.1", "--port", "0",
                       "--update_period", "2", "--expiration", "6", "--grace_period", "10"]
            command += ["--initial_peers", peers[0]] if peers else []  # the first starts the DHT
            log = self.log_dir / f"server-{i}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True,
                                           preexec_fn=_die_with_parent)
            self.processes.append(process)
            endpoint, dht_node = self._wait_ready(process, log, start_timeout)
            print(f"  expert server {i}  pid {process.pid}  experts {pattern}  at {endpoint}",
                  flush=True)
            peers.append(dht_node)
        self.initial_peers = peers[:1]

    @staticmethod
    def _wait_ready(process, log, timeout):
        """Until the server prints 'hivemind-server ready: N expert(s) at A, DHT node D'."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"ready: \d+ expert\(s\) at ([^\s,]+), DHT node ([^\s,]+)",
                              log.read_text(errors="replace"))
            if match:
                return match.group(1), match.group(2)
            if process.poll() is not None:
                raise SwarmError(f"hivemind-server exited with status {process.returncode}:\n"
                                 + log.read_text(errors="replace")[-2000:])
            time.sleep(0.1)
        raise SwarmError(f"hivemind-server was not ready after {timeout} s (log: {log})")

    def kill(self, index):
        self.processes[index].kill()

    def shutdown(self, timeout=15.0):
        """SIGTERM (drain, exit), then SIGKILL whatever still runs after `timeout` seconds."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = []
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            codes.append(process.returncode)
        self.processes = []
        return codes


def wait_for_experts(dht, uids, timeout):
    """Until every uid is declared in the DHT (as hivemind-demo --wait-experts). A MoE layer that
    searched before the experts were declared would remember the empty prefixes for a while."""
    deadline = time.monotonic() + timeout
    while True:
        live = sum(e is not None for e in dht.get_experts(uids, timeout=5))
        if live == len(uids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {live} of the {len(uids)} experts appeared in the DHT "
                               f"within {timeout} s")
        time.sleep(0.2)


def grid_uids(prefix, grid):
    prefix = prefix if prefix.endswith(".") else prefix + "."
    return [f"{prefix}{i}.{j}" for i in range(grid[0]) for j in range(grid[1])]


# ---- training ---------------------------------------------------------------------------------

def train(dht, args, swarm):
    task = SyntheticTask()
    model = Model(dht, args, task.features, task.classes)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    eval_x, eval_y = task.batch(1024, 999_999)
    total = args.grid[0] * args.grid[1]
    print(f"train_moe: {task.classes}-class task, {task.features} features; MoE grid "
          f"{args.grid[0]}x{args.grid[1]}, k_best {args.k_best}, batch {args.batch_size}",
          flush=True)

    start = window_start = time.monotonic()
    window_samples, best, reached, step = 0, 0.0, False, 0
    for step in range(1, args.steps + 1):
        if step == args.kill_server_at and swarm is not None:
            print(f"step {step:4d}: killing expert server 1 (SIGKILL); training continues around "
                  "its experts", flush=True)
            swarm.kill(1)
        model.train()
        x, y = task.batch(args.batch_size, args.seed * 1_000_003 + step)
        try:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
        except hivemind.HivemindError as e:  # too few experts answered: skip this batch
            print(f"step {step}: skipping the batch: {e}", flush=True)
            continue
        opt.step()
        window_samples += args.batch_size

        evaluate = step % args.eval_every == 0 or step == args.steps
        if step % 10 == 0 or step == 1 or evaluate:
            accuracy = (logits.argmax(1) == y).float().mean().item()
            chosen, mask = model.experts.last_routing()
            answering = {uid for uids, answered in zip(chosen, mask.tolist())
                         for uid, ok in zip(uids, answered) if ok}
            seconds = max(time.monotonic() - window_start, 1e-9)
            line = (f"step {step:4d}  loss {loss.item():.4f}  batch acc {accuracy:.3f}  "
                    f"{window_samples / seconds:7.1f} samples/s  experts answering "
                    f"{len(answering)}/{total}")
            if evaluate:
                model.eval()
                try:
                    with torch.no_grad():
                        held_out = (model(eval_x).argmax(1) == eval_y).float().mean().item()
                    best = max(best, held_out)
                    reached = held_out >= args.target_accuracy
                    line += f"  held-out acc {held_out:.3f}"
                except hivemind.HivemindError as e:
                    line += f"  held-out eval failed: {e}"
            print(line, flush=True)
            window_start, window_samples = time.monotonic(), 0
            if reached:
                break
    elapsed = time.monotonic() - start
    print(f"train_moe: {'reached' if reached else 'did NOT reach'} held-out accuracy {best:.3f} "
          f"after {step} steps in {elapsed:.1f} s (target {args.target_accuracy:.2f})", flush=True)
    return reached


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--initial_peers", "--initial-peers", nargs="*", default=None,
                   help="join this swarm (DHT addresses, space- or comma-separated) instead of "
                        "starting servers")
    p.add_argument("--server-bin", default=None,
                   help="hivemind-server to start (default: build/bin/hivemind-server of this "
                        "checkout, else hivemind-server on PATH)")
    p.add_argument("--uid_prefix", "--uid-prefix", default="expert.", help="expert uid prefix")
    p.add_argument("--grid", type=int, nargs=2, default=[4, 4], help="expert grid size")
    p.add_argument("--hidden_dim", "--hidden-dim", type=int, default=64, help="expert hidden size")
    p.add_argument("--k_best", "--k-best", type=int, default=4, help="experts per sample")
    p.add_argument("--batch_size", "--batch-size", type=int, default=128, help="samples per step")
    p.add_argument("--steps", type=int, default=600, help="maximum training steps")
    p.add_argument("--lr", type=float, default=3e-3,
                   help="the trainer's Adam (gate and local layers)")
    p.add_argument("--eval-every", type=int, default=25, help="held-out evaluation period (steps)")
    p.add_argument("--target-accuracy", type=float, default=0.95,
                   help="stop (exit 0) once the held-out accuracy reaches this")
    p.add_argument("--forward-timeout", type=float, default=10.0,
                   help="seconds; the MoE's forward_timeout and backward_timeout")
    p.add_argument("--timeout-after-k-min", type=float, default=1.0, help="seconds")
    p.add_argument("--wait-experts-timeout", type=float, default=60.0,
                   help="seconds to wait for every expert of the grid to be declared")
    p.add_argument("--kill-server-at", type=int, default=-1,
                   help="SIGKILL the second local server at this step")
    p.add_argument("--seed", type=int, default=1, help="model initialization and batches")
    return p.parse_args()


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)  # unwinds through the finally blocks below


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # the trainer's math is small; leave the cores to the servers
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)

    swarm = None
    log_dir = None
    reached = False
    try:
        if args.initial_peers:
            initial_peers = [p for arg in args.initial_peers for p in arg.split(",") if p]
            listen_on = "0.0.0.0:*"
        else:
            log_dir = Path(tempfile.mkdtemp(prefix="train_moe."))
            server_bin = args.server_bin or str(REPO / "build" / "bin" / "hivemind-server")
            if not os.access(server_bin, os.X_OK):
                server_bin = shutil.which("hivemind-server") or server_bin
            print(f"train_moe: starting two expert servers ({server_bin}, logs in {log_dir})",
                  flush=True)
            half = args.grid[0] // 2
            p = args.uid_prefix if args.uid_prefix.endswith(".") else args.uid_prefix + "."
            patterns = [f"{p}[0:{half}].[0:{args.grid[1]}]",
                        f"{p}[{half}:{args.grid[0]}].[0:{args.grid[1]}]"]
            swarm = LocalSwarm(log_dir)
            swarm.start(server_bin, args.hidden_dim, patterns, start_timeout=60)
            initial_peers = swarm.initial_peers
            listen_on = "127.0.0.1:*"

        # A trainer's node asks the DHT but stores nothing for others.
        dht = hivemind.DHT(initial_peers=initial_peers, listen_on=listen_on, client_mode=True,
                           start=True)
        try:
            wait_for_experts(dht, grid_uids(args.uid_prefix, args.grid), args.wait_experts_timeout)
            reached = train(dht, args, swarm)
        finally:
            dht.shutdown()
    except KeyboardInterrupt:
        print("train_moe: interrupted", flush=True)
        return 130
    except (hivemind.HivemindError, SwarmError, TimeoutError) as e:  # the swarm, not this script
        print(f"train_moe: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        if swarm is not None:
            codes = swarm.shutdown()
            print(f"train_moe: expert servers stopped (exit codes {codes})", flush=True)
        if log_dir is not None and reached:
            shutil.rmtree(log_dir, ignore_errors=True)
        elif log_dir is not None:
            print(f"train_moe: server logs kept in {log_dir}", flush=True)
    return 0 if reached else 3


if __name__ == "__main__":
    sys.exit(main())
