#!/usr/bin/env python3
"""hivemind's ``benchmark_throughput`` on hivemind_cpp, next to the C++ ``hivemind-bench throughput``.

Usage (the package importable, e.g. from a build tree)::

    PYTHONPATH=build/python HIVEMIND_SPIN_US=0 python3 python/bench/benchmark_throughput.py \\
        [--preset P] [--json] [--repeats N] [hivemind's parameters as --flags] [...]

What it measures, in one run:

1. **Python throughput** -- hivemind's ``benchmark_throughput(num_experts, num_handlers,
   num_clients, num_batches_per_client, expert_cls, hid_dim, batch_size, max_batch_size, backprop,
   device)``: one Python server process (this script re-executed as ``_server``) running
   ``hivemind_cpp.Server.create(...)`` with experts ``expert.0 .. expert.N-1`` on 127.0.0.1 (Adam,
   the given wire compression, ``cpu_bind``, ``intra_op_threads``), and ``num_clients`` Python
   client processes (this script re-executed as ``_client``), each holding one
   ``hivemind_cpp.RemoteExpert`` per expert and looping ``num_batches_per_client`` times: pick a
   random expert, ``out = expert(batch)`` on a fixed ``randn(batch_size, hid_dim)`` batch and, with
   ``backprop``, ``out.sum().backward()`` (a backward RPC = one optimizer step on the server).
   Metric: samples / s = batch_size * num_clients * num_batches_per_client / time, each sample
   counted once for forward + backward.

   Timing is the C++ bench's, so that the two compare: each client connects and fetches every
   expert's info first, then prints ``ready`` and waits at a barrier (a byte on its stdin); the
   clock runs from the release until the last client has printed ``done``. (hivemind's own clock
   started at "server ready" and so also counted the clients' process start-up and imports.)
   The clients draw their experts with the C++ client's generator (``std::mt19937(seed + rank)``,
   reproduced with numpy's legacy ``RandomState``, whose integer seeding is mt19937's) and their
   batch with ``torch.manual_seed(rank)``, so both runs send the same batches to the same experts
   in the same order; the server's weights come from the same seed (bit-identical experts).

2. **C++ throughput, same configuration** -- ``build/bin/hivemind-bench throughput --json`` with
   the same preset *and every value passed explicitly as a flag* (experts, handlers, clients,
   batches, class, hid_dim, batch and max batch size, backprop, device, compression, transport,
   cpu_bind, threads, seed): a ``hivemind-server`` process and C++ client processes, timed the same
   way; it also reports its in-process baseline. Printed: the ratio Python / C++ samples/s
   (target >= 0.9 for ``nop`` and ``ffn_forward_backward``; printed for every preset).

3. **Python call overhead per RemoteExpert forward + backward on a batch of 1.** The C++ bench has
   no latency-loop mode, so both sides are measured with the same throughput machinery: one
   client, one expert (``--overhead_expert_cls``, default ``nop`` so that the expert computes
   nothing), ``batch_size=1``, ``hid_dim=--overhead_hid_dim``, ``backprop=True``,
   ``num_batches_per_client=--overhead_calls``. With a single client every call is a synchronous
   forward RPC followed by a backward RPC, so the time from the barrier to ``done`` divided by the
   number of calls is the latency of one forward + backward; per call (µs) = 1e6 / samples_per_s.
   The Python figure is from the Python server + Python client, the C++ figure from
   ``hivemind-bench throughput`` with the same values (hivemind-server + C++ client). Their
   difference is what the Python layer adds per call: ``nn.Module.__call__``, the pybind11 call
   and GIL release, Python autograd (``out.sum().backward()`` through ``torch.autograd``), and a
   server hosted inside a Python interpreter instead of the ``hivemind-server`` binary (same C++
   server; its threads never take the GIL). Target: <= 100 µs per call.

Each figure is measured ``--repeats`` times, the Python and C++ runs alternating so that both see
the same machine load; the ratio and difference are of the medians (the overhead also prints the
difference of the best runs: single batch-1 runs scatter by up to 2x with how the client's and the
server's threads land on the cores). Targets are reported, never enforced: the exit status is 0
whenever every run completed.

Presets are the C++ bench's (hivemind's, scaled down to run in seconds on 2 CPU cores; hivemind's
own values in ``--help``); every parameter flag overrides the preset, with the C++ bench's rules
(``--num_clients`` also sets num_handlers = max(1, clients // 2) and ``--batch_size`` sets
max_batch_size = 4 * batch_size, unless those are given too). ``--preset default`` is hivemind's
name of ``ffn_forward_backward``.

``--json``: one JSON object per measurement on stdout (the fields of ``hivemind-bench --json``:
bench, case, metric, value, unit, baseline, baseline_value, ratio, plus target and target_met);
everything for people goes to stderr.

Not hivemind's: ``expert_cls='transformer'`` runs at the C++ server's default seq_len (Server.create
has no seq_len keyword; the C++ bench is given the same value). ``device`` defaults to ``cpu``, as the
C++ bench (hivemind: cuda when available).
"""

import argparse
import json
import math
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
DEFAULT_BENCH_BIN = REPO / "build" / "bin" / "hivemind-bench"

RATIO_TARGET = 0.9
OVERHEAD_TARGET_US = 100.0


# ---------------------------------------------------------------------------------------------
# Presets: the C++ bench's (bench/throughput/throughput_bench.cc), with hivemind's original values.

def _preset(experts, handlers, clients, batches, cls, hid, batch, max_batch, backprop, original):
    return dict(config=dict(num_experts=experts, num_handlers=handlers, num_clients=clients,
                            num_batches_per_client=batches, expert_cls=cls, hid_dim=hid,
                            batch_size=batch, max_batch_size=max_batch, backprop=backprop),
                original=original)


PRESETS = {
    "ffn_forward_backward": _preset(
        4, 2, 4, 8, "ffn", 512, 256, 1024, True,
        "16 experts, 64 handlers, 128 clients x 16 batches, ffn hid 1024, batch 2048, max 8192, "
        "fwd+bwd"),
    "ffn_forward": _preset(4, 2, 4, 8, "ffn", 512, 256, 1024, False,
                           "as ffn_forward_backward, forward only"),
    "ffn_small_batch": _preset(
        4, 4, 8, 16, "ffn", 1024, 32, 8192, False,
        "4 experts, 64 handlers, 128 clients x 64 batches, ffn hid 1024, batch 32, max 8192, fwd"),
    "nop": _preset(4, 4, 8, 256, "nop", 1024, 32, 128, False,
                   "nop expert, other parameters as the default (here: the issue's nop target "
                   "configuration)"),
    "minimalistic": _preset(1, 1, 1, 16, "ffn", 256, 256, 1024, True,
                            "1 expert, 1 handler, 1 client, other parameters as the default"),
}
PRESET_ALIASES = {"default": "ffn_forward_backward"}
EXPERT_CLASSES = ("ffn", "ffn_v08", "transformer", "nop")


def uid_of(i):
    return f"expert.{i}"


# ---------------------------------------------------------------------------------------------
# Output: lines for people on stdout, or on stderr under --json (stdout stays parseable).

class Reporter:
    def __init__(self, json_mode):
        self.json_mode = json_mode

    def note(self, line=""):
        stream = sys.stderr if self.json_mode else sys.stdout
        print(line, file=stream, flush=True)

    def report(self, case, metric, value, unit, baseline, baseline_value, **extra):
        if not self.json_mode:
            return
        def finite(x):
            return x if isinstance(x, (int, float)) and math.isfinite(x) else None
        obj = {"bench": "python_throughput", "case": case, "metric": metric,
               "value": finite(value), "unit": unit, "baseline": baseline,
               "baseline_value": finite(baseline_value)}
        obj["ratio"] = (finite(value / baseline_value)
                        if value is not None and baseline_value else None)
        obj.update(extra)
        print(json.dumps(obj), flush=True)


# ---------------------------------------------------------------------------------------------
# Child processes, each reading and writing one line at a time on pipes.

class Child:
    """A child process speaking in lines: its stdout read with a deadline, its stdin for bytes."""

    def __init__(self, argv, name):
        self.name = name
        # Its stderr (the engine's log lines, a traceback) goes to a file, passed on by
        # dump_stderr() once the measurement is over, so that it does not interleave with ours.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, bufsize=0, env=os.environ.copy())
        self._buffer = b""

    def dump_stderr(self, note):
        """Its stderr so far, each line prefixed with its name, through `note` (a callable)."""
        self._stderr.seek(0)
        for line in self._stderr.read().decode(errors="replace").splitlines():
            note(f"  [{self.name}] {line}")
        self._stderr.close()

    @property
    def pid(self):
        return self.proc.pid

    def read_line(self, timeout):
        """The next line on its stdout, without the newline; RuntimeError after `timeout` s or
        when the child closes its stdout first."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name} (pid {self.pid}): no line within {timeout} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                code = self.proc.poll()
                raise RuntimeError(f"{self.name} (pid {self.pid}) closed its output"
                                   + (f" (exit status {code})" if code is not None else "")
                                   + (f"; partial line {self._buffer!r}" if self._buffer else ""))
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def expect(self, prefix, timeout):
        """The next line starting with `prefix` (other lines are passed on to stderr)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(max(deadline - time.monotonic(), 0.001))
            if line.startswith(prefix):
                return line
            print(f"  [{self.name}] {line}", file=sys.stderr, flush=True)

    def write(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _child_argv(role, *args):
    return [sys.executable, str(HERE), role, *args]


# ---------------------------------------------------------------------------------------------
# The server and client roles (this script re-executed).

def server_main(config_json):
    c = json.loads(config_json)
    t0 = time.perf_counter()
    import torch
    import hivemind_cpp as hivemind
    t_import = time.perf_counter()
    server = hivemind.Server.create(
        listen_on=f"{c['transport']}://127.0.0.1:{c['port']}",
        expert_uids=[uid_of(i) for i in range(c["num_experts"])],
        expert_cls=c["expert_cls"], hidden_dim=c["hid_dim"], optim_cls=torch.optim.Adam,
        num_handlers=c["num_handlers"], max_batch_size=c["max_batch_size"], device=c["device"],
        compression=c["compression"], update_period=600, stats_report_interval=None,
        start=False, seed=c["seed"], grace_period=10.0, cpu_bind=c["cpu_bind"],
        intra_op_threads=c["threads"])
    t_created = time.perf_counter()
    server.run_in_background()
    t_started = time.perf_counter()
    print(f"ready {server.endpoint} {t_import - t0:.6f} {t_created - t_import:.6f} "
          f"{t_started - t_created:.6f}", flush=True)
    sys.stdin.buffer.read()  # serves until the parent closes our stdin
    server.shutdown()
    return 0


def client_main(rank, endpoint, config_json):
    c = json.loads(config_json)
    rank = int(rank)
    import numpy as np
    import torch
    import hivemind_cpp as hivemind

    torch.set_num_threads(1)  # as hivemind's clients (and the C++ bench's)
    experts = []
    for i in range(c["num_experts"]):
        expert = hivemind.RemoteExpert(uid_of(i), endpoint)
        expert.info  # connects and caches the expert's info, before the barrier
        experts.append(expert)
    # The C++ client's draws: std::mt19937(uint32(seed) + uint32(rank)) % num_experts.
    rng = np.random.RandomState(((c["seed"] & 0xFFFFFFFF) + rank) & 0xFFFFFFFF)
    draws = rng.randint(0, 2 ** 32, size=c["num_batches_per_client"], dtype=np.uint64)
    order = [experts[int(d) % len(experts)] for d in draws]
    torch.manual_seed(rank)
    shape = ((c["batch_size"], c["seq_len"], c["hid_dim"]) if c["expert_cls"] == "transformer"
             else (c["batch_size"], c["hid_dim"]))
    batch = torch.randn(*shape, device=c["device"])
    backprop = bool(c["backprop"])
    if backprop:
        batch.requires_grad_(True)

    print("ready", flush=True)
    if not sys.stdin.buffer.read(1):
        return 1  # the parent went away
    start = time.perf_counter()
    for expert in order:
        out = expert(batch)
        if backprop:
            out.sum().backward()
            batch.grad = None  # hivemind's dummy batch never reads its gradient
    if batch.device.type == "cuda":
        torch.cuda.synchronize()
    print(f"done {time.perf_counter() - start:.6f}", flush=True)
    # Stay until the parent closes stdin (after the last client is done): a client that exited now
    # would tear its interpreter and LibTorch down inside the others' timed window, as the C++
    # bench's clients no longer do.
    sys.stdin.buffer.read()
    return 0


# ---------------------------------------------------------------------------------------------
# The parent: hivemind's benchmark_throughput, the C++ bench, the comparison.

def resolve_config(num_experts=16, num_handlers=None, num_clients=128, num_batches_per_client=16,
                   expert_cls="ffn", hid_dim=1024, batch_size=2048, max_batch_size=None,
                   backprop=True, device=None, port=None, *, compression="none", transport="tcp",
                   cpu_bind="none", threads=1, seed=None, seq_len=None):
    """hivemind's defaults: max_batch_size = 4 * batch_size, num_handlers = max(1, num_handlers or
    num_clients // 2), device = cuda if available else cpu."""
    if expert_cls not in EXPERT_CLASSES:
        raise ValueError(f"expert_cls {expert_cls!r}: use one of {', '.join(EXPERT_CLASSES)}")
    import torch
    from hivemind_cpp import _C
    max_batch_size = max_batch_size or batch_size * 4
    if max_batch_size < batch_size:
        raise ValueError("need max_batch_size >= batch_size")
    return dict(
        num_experts=int(num_experts), num_handlers=max(1, num_handlers or num_clients // 2),
        num_clients=int(num_clients), num_batches_per_client=int(num_batches_per_client),
        expert_cls=expert_cls, hid_dim=int(hid_dim), batch_size=int(batch_size),
        max_batch_size=int(max_batch_size), backprop=bool(backprop),
        device=device or ("cuda" if torch.cuda.is_available() else "cpu"), port=int(port or 0),
        compression=compression, transport=transport, cpu_bind=cpu_bind, threads=int(threads),
        seed=int(_C._default_expert_seed if seed is None else seed),
        # Server.create has no seq_len: the C++ server's default, given to the C++ bench too.
        seq_len=int(seq_len or _C._ServerOptions().seq_len))


def run_python(c, reporter=None, quiet=False):
    """One Python server process + num_clients Python client processes; returns the figures."""
    say = (lambda line="": None) if quiet or reporter is None else reporter.note
    to_stderr = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    t = dict(started=time.perf_counter())
    config_json = json.dumps(c)
    server = None
    clients = []
    failed = False
    try:
        server = Child(_child_argv("_server", config_json), "python server")
        t["began_launching_server"] = time.perf_counter()
        ready = server.expect("ready ", timeout=120).split()
        t["server_ready"] = time.perf_counter()
        endpoint = ready[1]
        import_s, create_s, start_s = (float(x) for x in ready[2:5])
        for rank in range(c["num_clients"]):
            clients.append(Child(_child_argv("_client", str(rank), endpoint, config_json),
                                 f"python client {rank}"))
        for client in clients:
            client.expect("ready", timeout=180)
        t["clients_ready"] = time.perf_counter()
        start = time.perf_counter()
        for client in clients:
            client.write(b"g")
        client_seconds = []
        for client in clients:
            client_seconds.append(float(client.expect("done ", timeout=600).split()[1]))
        seconds = time.perf_counter() - start
        t["clients_finished"] = time.perf_counter()
        for client in clients:
            client.close_stdin()
            code = client.wait(timeout=30)
            if code != 0:
                raise RuntimeError(f"{client.name} (pid {client.pid}) exited with {code}")
    except BaseException:
        failed = True
        raise
    finally:
        for client in clients:
            client.kill()
        if server is not None:
            server.close_stdin()  # a clean drain
            if server.wait(timeout=30) is None:
                print(f"warning: the Python server (pid {server.pid}) did not exit within 30 s of "
                      "its stdin closing; killed", file=sys.stderr, flush=True)
                server.kill()
            elif server.proc.returncode != 0 and not failed:
                print(f"warning: the Python server exited with {server.proc.returncode}",
                      file=sys.stderr, flush=True)
        t["server_shutdown_finished"] = time.perf_counter()
        # Children's log lines: shown with the figures, or on stderr if the run failed.
        for child in ([server] if server is not None else []) + clients:
            child.dump_stderr(to_stderr if failed else say)

    samples = c["batch_size"] * c["num_clients"] * c["num_batches_per_client"]
    rate = samples / seconds
    passes = "forward + backward" if c["backprop"] else "forward"
    say("Benchmark finished, status:Success")
    say(f"Server parameters: num_experts={c['num_experts']}, num_handlers={c['num_handlers']}, "
        f"max_batch_size={c['max_batch_size']}, expert_cls={c['expert_cls']}, "
        f"hid_dim={c['hid_dim']}, device={c['device']}")
    say(f"Client parameters: num_clients={c['num_clients']}, "
        f"num_batches_per_client={c['num_batches_per_client']}, batch_size={c['batch_size']}, "
        f"backprop={c['backprop']}")
    say("Results: ")
    startup = t["server_ready"] - t["began_launching_server"]
    say(f"\tServer startup took {startup:.3f} s. ({import_s:.3f} s. imports + {create_s:.3f} s. "
        f"experts and networking (Server.create) + {start_s:.3f} s. start; the rest is the "
        f"interpreter's start)")
    say(f"\tClients connected and fetched expert info {t['clients_ready'] - t['server_ready']:.3f} "
        f"s. after server ready (not timed)")
    say(f"\tProcessed {samples} examples in {seconds:.3f}")
    say(f"\tThroughput for {passes} passes: {rate:.3f} samples / s.")
    say(f"\tBenchmarking took {t['server_shutdown_finished'] - t['started']:.3f} s.")
    say(f"Using device: {c['device']}")
    return dict(samples=samples, seconds=seconds, samples_per_s=rate, endpoint=endpoint,
                client_seconds=client_seconds, server_startup_s=startup)


def benchmark_throughput(num_experts=16, num_handlers=None, num_clients=128,
                         num_batches_per_client=16, expert_cls="ffn", hid_dim=1024,
                         batch_size=2048, max_batch_size=None, backprop=True, device=None,
                         port=None, **extras):
    """hivemind's benchmark_throughput (its keyword arguments and printed lines), on hivemind_cpp.
    Project extras: compression, transport, cpu_bind, threads, seed. Returns the figures."""
    c = resolve_config(num_experts, num_handlers, num_clients, num_batches_per_client, expert_cls,
                       hid_dim, batch_size, max_batch_size, backprop, device, port, **extras)
    return run_python(c, Reporter(json_mode=False))


def cpp_flags(c, preset):
    """The C++ bench's command line for configuration `c`: every value explicit."""
    return ["throughput", "--json", "--preset", preset,
            "--num_experts", str(c["num_experts"]), "--num_handlers", str(c["num_handlers"]),
            "--num_clients", str(c["num_clients"]),
            "--num_batches_per_client", str(c["num_batches_per_client"]),
            "--expert_cls", c["expert_cls"], "--hid_dim", str(c["hid_dim"]),
            "--batch_size", str(c["batch_size"]), "--max_batch_size", str(c["max_batch_size"]),
            "--backprop", "1" if c["backprop"] else "0", "--device", c["device"],
            "--seq_len", str(c["seq_len"]), "--compression", c["compression"],
            "--transport", c["transport"], "--cpu_bind", c["cpu_bind"],
            "--threads", str(c["threads"]), "--seed", str(c["seed"])]


def run_cpp(c, preset, bench_bin, reporter=None, quiet=False):
    """hivemind-bench throughput with configuration `c`; returns its figures."""
    argv = [str(bench_bin)] + cpp_flags(c, preset)
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=900)
    if reporter is not None and not quiet:
        for line in done.stderr.splitlines():
            reporter.note(f"  [C++] {line}")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr}"
                           f"{done.stdout}")
    for line in done.stdout.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("metric") == "samples_per_s":
            samples = c["batch_size"] * c["num_clients"] * c["num_batches_per_client"]
            return dict(samples=samples, samples_per_s=float(m["value"]),
                        seconds=samples / float(m["value"]),
                        in_process_samples_per_s=m.get("baseline_value"), argv=argv)
    raise RuntimeError(f"{' '.join(argv)} printed no samples_per_s line:\n{done.stdout}")


def median(values):
    return statistics.median(values) if values else float("nan")


def fmt_runs(values, spec=",.0f"):
    return " / ".join(format(v, spec) for v in values)


def parse_args(argv):
    presets_help = "presets (the C++ bench's, scaled down from hivemind's):\n" + "".join(
        f"  {name:<21} {p['config']['num_experts']} experts, {p['config']['num_handlers']} "
        f"handlers, {p['config']['num_clients']} clients x {p['config']['num_batches_per_client']} "
        f"batches, {p['config']['expert_cls']} hid {p['config']['hid_dim']}, batch "
        f"{p['config']['batch_size']}, max {p['config']['max_batch_size']}, "
        f"{'fwd+bwd' if p['config']['backprop'] else 'fwd'}\n  {'':<21}   hivemind: "
        f"{p['original']}\n" for name, p in PRESETS.items())
    parser = argparse.ArgumentParser(
        description="hivemind's benchmark_throughput on hivemind_cpp, compared with "
                    "hivemind-bench throughput in the same run",
        epilog=presets_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="ffn_forward_backward",
                        choices=list(PRESETS) + list(PRESET_ALIASES))
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per measurement on stdout; notes go to stderr")
    # hivemind's parameters; None: the preset's value.
    parser.add_argument("--num_experts", type=int)
    parser.add_argument("--num_handlers", type=int,
                        help="recorded only (default with --num_clients: half of them)")
    parser.add_argument("--num_clients", type=int)
    parser.add_argument("--num_batches_per_client", type=int)
    parser.add_argument("--expert_cls", choices=EXPERT_CLASSES)
    parser.add_argument("--hid_dim", type=int)
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--max_batch_size", type=int,
                        help="default with --batch_size: 4 batches")
    parser.add_argument("--backprop", type=int, choices=(0, 1))
    parser.add_argument("--device", default=None, help="cpu (default) or cuda[:N]")
    parser.add_argument("--port", type=int, default=0, help="the Python server's port (0: any)")
    # The project's extras, applied to both runs.
    parser.add_argument("--compression", default="none")
    parser.add_argument("--transport", default="tcp", choices=("tcp", "ucx", "auto"))
    parser.add_argument("--cpu_bind", default="none", choices=("none", "auto"))
    parser.add_argument("--threads", type=int, default=1,
                        help="LibTorch intra-op threads of the server's compute thread")
    parser.add_argument("--seed", type=int, default=None,
                        help="expert weights' seed (default: the engine's)")
    # This script's own.
    parser.add_argument("--repeats", type=int, default=1,
                        help="Python and C++ runs, alternating; ratios are of the medians")
    parser.add_argument("--overhead_calls", type=int, default=2000,
                        help="forward+backward calls of the batch-1 overhead measurement (0: skip)")
    parser.add_argument("--overhead_expert_cls", default="nop", choices=EXPERT_CLASSES)
    parser.add_argument("--overhead_hid_dim", type=int, default=1024)
    parser.add_argument("--bench-bin", default=os.environ.get("HIVEMIND_BENCH_BIN",
                                                              str(DEFAULT_BENCH_BIN)),
                        help="the C++ hivemind-bench (default: build/bin/hivemind-bench)")
    parser.add_argument("--skip-cpp", action="store_true",
                        help="run the Python benchmark only (no comparison)")
    args = parser.parse_args(argv)
    for name in ("num_experts", "num_handlers", "num_clients", "num_batches_per_client",
                 "hid_dim", "batch_size", "max_batch_size", "threads", "repeats"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be positive")
    if args.overhead_calls < 0 or args.overhead_hid_dim <= 0:
        parser.error("--overhead_calls must be >= 0 and --overhead_hid_dim positive")
    return args


def config_from_args(args):
    preset = PRESET_ALIASES.get(args.preset, args.preset)
    p = dict(PRESETS[preset]["config"])
    if args.num_experts is not None:
        p["num_experts"] = args.num_experts
    if args.num_clients is not None:
        p["num_clients"] = args.num_clients
        p["num_handlers"] = max(1, args.num_clients // 2)
    if args.num_handlers is not None:
        p["num_handlers"] = args.num_handlers
    if args.num_batches_per_client is not None:
        p["num_batches_per_client"] = args.num_batches_per_client
    if args.expert_cls is not None:
        p["expert_cls"] = args.expert_cls
    if args.hid_dim is not None:
        p["hid_dim"] = args.hid_dim
    if args.batch_size is not None:
        p["batch_size"] = args.batch_size
        p["max_batch_size"] = 4 * args.batch_size
    if args.max_batch_size is not None:
        p["max_batch_size"] = args.max_batch_size
    if args.backprop is not None:
        p["backprop"] = bool(args.backprop)
    c = resolve_config(**p, device=args.device or "cpu", port=args.port,
                       compression=args.compression, transport=args.transport,
                       cpu_bind=args.cpu_bind, threads=args.threads, seed=args.seed)
    return preset, c


def describe(c):
    return (f"{c['num_experts']} {c['expert_cls']} expert(s) hid {c['hid_dim']}, "
            f"{c['num_clients']} client process(es) x {c['num_batches_per_client']} batch(es) of "
            f"{c['batch_size']}, max_batch_size {c['max_batch_size']}, num_handlers "
            f"{c['num_handlers']}, {'forward + backward' if c['backprop'] else 'forward only'}, "
            f"device {c['device']}, compression {c['compression']}, transport {c['transport']}, "
            f"cpu_bind {c['cpu_bind']}, {c['threads']} server LibTorch thread(s), seed {c['seed']}")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    reporter = Reporter(args.json)
    preset, c = config_from_args(args)
    bench_bin = Path(args.bench_bin)
    if not args.skip_cpp and not os.access(bench_bin, os.X_OK):
        reporter.note(f"error: {bench_bin} is not an executable (build it, or --bench-bin, or "
                      "--skip-cpp)")
        return 2
    load = os.getloadavg()
    reporter.note(f"benchmark_throughput.py preset {preset}: {describe(c)}")
    reporter.note(f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start, "
                  f"HIVEMIND_SPIN_US={os.environ.get('HIVEMIND_SPIN_US', '<unset>')}, "
                  f"{args.repeats} repeat(s))")

    # ---- throughput, Python and C++ alternating ----
    py_rates, cpp_rates, in_process = [], [], []
    for r in range(args.repeats):
        reporter.note(f"\n== run {r + 1}/{args.repeats}: Python (hivemind_cpp.Server.create + "
                      f"{c['num_clients']} RemoteExpert client processes)")
        py = run_python(c, reporter)
        py_rates.append(py["samples_per_s"])
        if args.skip_cpp:
            continue
        reporter.note(f"== run {r + 1}/{args.repeats}: C++ ({bench_bin.name} "
                      f"{' '.join(cpp_flags(c, preset))})")
        cpp = run_cpp(c, preset, bench_bin, reporter)
        cpp_rates.append(cpp["samples_per_s"])
        if cpp["in_process_samples_per_s"] is not None:
            in_process.append(float(cpp["in_process_samples_per_s"]))

    passes = "forward + backward" if c["backprop"] else "forward"
    py_median = median(py_rates)
    reporter.note("")
    reporter.note(f"== summary, preset {preset} ({passes})")
    reporter.note(f"Python throughput: {fmt_runs(py_rates)} samples / s (median "
                  f"{py_median:,.0f})")
    if args.skip_cpp:
        reporter.report(preset, "samples_per_s", py_median, "samples/s", "", None)
        return 0
    cpp_median = median(cpp_rates)
    ratio = py_median / cpp_median
    ratio_met = ratio >= RATIO_TARGET
    reporter.note(f"C++ throughput:    {fmt_runs(cpp_rates)} samples / s (median "
                  f"{cpp_median:,.0f}; C++ in-process baseline {fmt_runs(in_process)})")
    reporter.note(f"Python / C++ samples/s: {ratio:.3f} (per run: "
                  f"{fmt_runs([p / q for p, q in zip(py_rates, cpp_rates)], '.3f')}) -- target "
                  f">= {RATIO_TARGET}: {'met' if ratio_met else 'MISSED'}")
    reporter.report(preset, "samples_per_s", py_median, "samples/s", "cpp", cpp_median,
                    runs=py_rates, baseline_runs=cpp_rates, target=f">= {RATIO_TARGET}",
                    target_met=ratio_met)

    # ---- call overhead: 1 client, 1 expert, batch 1, forward + backward ----
    if args.overhead_calls > 0:
        o = dict(c, num_experts=1, num_handlers=1, num_clients=1,
                 num_batches_per_client=args.overhead_calls, expert_cls=args.overhead_expert_cls,
                 hid_dim=args.overhead_hid_dim, batch_size=1, max_batch_size=4, backprop=True)
        reporter.note("")
        reporter.note(f"== call overhead: {args.overhead_calls} RemoteExpert forward + backward "
                      f"calls on a batch of 1 (1 {o['expert_cls']} expert hid {o['hid_dim']}, 1 "
                      "client; per call = barrier-to-done time / calls), Python vs C++, "
                      f"{args.repeats} repeat(s)")
        py_us, cpp_us = [], []
        for r in range(args.repeats):
            py = run_python(o, reporter, quiet=True)
            py_us.append(1e6 * py["seconds"] / args.overhead_calls)
            cpp = run_cpp(o, preset, bench_bin, reporter, quiet=True)
            cpp_us.append(1e6 * cpp["seconds"] / args.overhead_calls)
            reporter.note(f"  run {r + 1}: Python {py_us[-1]:.1f} µs/call, C++ {cpp_us[-1]:.1f} "
                          f"µs/call")
        py_call, cpp_call = median(py_us), median(cpp_us)
        diff = py_call - cpp_call
        overhead_met = diff <= OVERHEAD_TARGET_US
        best_diff = min(py_us) - min(cpp_us)
        reporter.note(f"Per call (forward + backward, batch 1), medians: Python {py_call:.1f} µs, "
                      f"C++ {cpp_call:.1f} µs, difference {diff:+.1f} µs -- target <= "
                      f"{OVERHEAD_TARGET_US:.0f} µs: {'met' if overhead_met else 'MISSED'}")
        reporter.note(f"  (best runs: Python {min(py_us):.1f} µs, C++ {min(cpp_us):.1f} µs, "
                      f"difference {best_diff:+.1f} µs; single runs scatter with the scheduling of "
                      "the client's and the server's threads on the cores)")
        reporter.report("call_overhead_batch1", "us_per_call", py_call, "us", "cpp", cpp_call,
                        runs=py_us, baseline_runs=cpp_us, difference_us=diff,
                        best_difference_us=best_diff,
                        target=f"difference <= {OVERHEAD_TARGET_US:.0f} us",
                        target_met=overhead_met)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_server":
        sys.exit(server_main(*sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "_client":
        sys.exit(client_main(*sys.argv[2:]))
    sys.exit(main())
