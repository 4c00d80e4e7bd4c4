#!/usr/bin/env bash
# One-shot GPU check for a lent GPU host (see README "On a GPU host"): builds what the GPU checks need
# against the host's CUDA LibTorch and, when present, the CUDA-aware UCX archive in .gpu/; then runs the
# GPU tests, the transport rpc suite on that UCX, and the GPU benchmarks. Every step has a time limit
# and runs even when an earlier one failed.
#
# What comes back from the device tool is at most 8 files from $OUT, so $OUT (or ./gpu-check-out)
# gets four, each written as the steps go (a run cut off at its limit still returns what it did):
# summary.txt (one line per step, the tests' counts), steps.log (every step's log, one after the
# other, at most the last 2 MiB of each), bench.jsonl (the benchmarks' --json lines) and
# ucx-transports.txt. The steps' own logs stay in $HIVEMIND_GPU_BUILD_DIR-logs/.
#
# Usage: scripts/gpu-check.sh [--build-only] [--skip-bench]
# Environment: OUT (output folder), HIVEMIND_GPU_BUILD_DIR (default build-gpu), JOBS (default nproc).
set -uo pipefail
cd "$(dirname "$0")/.."

build_only=0
skip_bench=0
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=1 ;;
    --skip-bench) skip_bench=1 ;;
    *) echo "gpu-check: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

out=${OUT:-$PWD/gpu-check-out}
build=${HIVEMIND_GPU_BUILD_DIR:-build-gpu}
jobs=${JOBS:-$(nproc)}
logs=$build-logs
mkdir -p "$out" "$logs"
summary="$out/summary.txt"
steps_log="$out/steps.log"
: >"$summary"
: >"$steps_log"
started=$(date +%s)
failures=0

note() { echo "$*" | tee -a "$summary"; }

# step <name> <seconds> <command...>: runs it with a limit, logs to $logs/<name>.log (appended to
# $steps_log when it ends), records the outcome.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$logs/$name.log" 2>&1
  local rc=$?
  local took=$(($(date +%s) - t0))
  { echo "===== $name: exit $rc after $took s"; tail -c 2M "$logs/$name.log"; echo; } >>"$steps_log"
  if [ "$rc" -eq 0 ]; then
    note "ok      $name (${took} s)"
  else
    [ "$rc" -eq 124 ] && note "TIMEOUT $name after ${took} s (limit $limit s)" || note "FAILED  $name: exit $rc (${took} s)"
    failures=$((failures + 1))
  fi
  return "$rc"
}

# A benchmark step; bench.jsonl is rewritten after each, so a run cut off later still returns it.
bench_step() {
  step "$@"
  local rc=$?
  grep -h '^{' "$logs"/bench-*.log >"$out/bench.jsonl" 2>/dev/null
  return "$rc"
}

note "gpu-check at $(git rev-parse --short HEAD 2>/dev/null || echo '?') on $(hostname), $(date -u +%FT%TZ)"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu     /' | tee -a "$summary"
else
  note "gpu     none visible (nvidia-smi missing): the GPU tests will skip"
fi

# The CUDA-aware UCX, when scripts/gpu-stage.sh staged its archive in .gpu/.
archive=$(ls .gpu/ucx-*.tgz 2>/dev/null | grep -v -- '-configured\.tgz$' | head -n 1 || true)
if [ -n "$archive" ]; then
  ucx_root=$PWD/.gpu/root
  mkdir -p "$ucx_root"
  tar -xzf "$archive" -C "$ucx_root"
  ucx_pc=$(find "$ucx_root" -name ucx.pc -path '*/lib/pkgconfig/*' | head -n 1)
  ucx_prefix=${ucx_pc%/lib/pkgconfig/ucx.pc}
  export PKG_CONFIG_PATH="$ucx_prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LD_LIBRARY_PATH="$ucx_prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export UCX_MODULE_DIR="$ucx_prefix/lib/ucx"
  export PATH="$ucx_prefix/bin:$PATH"
  note "ucx     $archive -> $ucx_prefix ($(ucx_info -v 2>/dev/null | head -n 1))"
  ucx_info -d 2>/dev/null | grep -E '^#\s+Transport:' | sort -u | tr -s ' ' >"$out/ucx-transports.txt"
else
  note "ucx     no .gpu/ucx-*.tgz: building with whatever UCX pkg-config finds (or TCP only)"
fi

torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
[ -n "$torch_prefix" ] && note "torch   $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null)"

# CMake 4 refuses package configs written for CMake < 3.5 (CLI11's is one) unless told the minimum.
configure=(cmake -S . -G Ninja -DCMAKE_BUILD_TYPE=Release -DHIVEMIND_WARNINGS_AS_ERRORS=OFF
           -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
command -v nvidia-smi >/dev/null && configure+=(-DCMAKE_CUDA_ARCHITECTURES=native)
targets=(hivemind-info hivemind-bench hivemind-server transport_test_server transport_gpu_test transport_rpc_test
         quant_gpu_test quant_torch_test server_gpu_test client_remote_moe_gpu_test)
if ! step configure 300 "${configure[@]}" -B "$build" ${torch_prefix:+"-DCMAKE_PREFIX_PATH=$torch_prefix"}; then
  # The host lacks a build dependency: fall back to Debian's, staged by scripts/gpu-stage.sh.
  [ -f .gpu/deps.tgz ] || { note "gpu-check: configure failed and no .gpu/deps.tgz, see configure in $steps_log"; exit 1; }
  mkdir -p .gpu/deps
  tar -xzf .gpu/deps.tgz -C .gpu/deps
  deps=$PWD/.gpu/deps/usr
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$deps/lib/x86_64-linux-gnu"
  rm -rf "$build"
  step configure-with-staged-deps 300 "${configure[@]}" -B "$build" "-DCMAKE_PREFIX_PATH=${torch_prefix:+$torch_prefix;}$deps" ||
    { note "gpu-check: configure failed, see configure-with-staged-deps in $steps_log"; exit 1; }
  failures=$((failures - 1))  # the first configure's failure is what the fallback is for
  note "deps    Debian's spdlog/fmt/CLI11/nlohmann-json/OpenSSL/prometheus-cpp from .gpu/deps.tgz (the host lacks one of them)"
fi
# The NCCL backend's GPU tests, where the configure found NCCL (HIVEMIND_WITH_NCCL=AUTO).
ninja -C "$build" -t query averaging_nccl_gpu_test >/dev/null 2>&1 && targets+=(averaging_nccl_gpu_test)
# The Python package, when the host's python3 imports torch and pybind11 was found (PyTorch's copy).
grep -q '^HIVEMIND_PYTHON_EXECUTABLE:INTERNAL=' "$build/CMakeCache.txt" && targets+=(hivemind_python)
step build 900 cmake --build "$build" -j "$jobs" --target "${targets[@]}" ||
  { note "gpu-check: build failed, see build in $steps_log"; exit 1; }
step info 60 "$build/bin/hivemind-info"
[ "$build_only" = 1 ] && { note "gpu-check: built in $(($(date +%s) - started)) s (--build-only)"; exit 0; }

# GPU tests (each skips with its reason where no device is visible), then the rpc suite on this UCX.
gpu_tests=(transport_gpu_test quant_gpu_test quant_torch_test server_gpu_test client_remote_moe_gpu_test)
[[ " ${targets[*]} " == *" averaging_nccl_gpu_test "* ]] && gpu_tests+=(averaging_nccl_gpu_test)
for t in "${gpu_tests[@]}"; do
  step "$t" 300 env HIVEMIND_BUILD_DIR="$PWD/$build" "$build/tests/$t"
  grep -hE '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?[,.]' "$logs/$t.log" | sed "s/^/        $t /" >>"$summary"
done
step transport_rpc_test 300 env HIVEMIND_BUILD_DIR="$PWD/$build" "$build/tests/transport_rpc_test"
if [[ " ${targets[*]} " == *" hivemind_python "* ]]; then
  if python3 -m pytest --version >/dev/null 2>&1; then
    step python-cuda 300 env PYTHONPATH="$PWD/$build/python" HIVEMIND_BUILD_DIR="$PWD/$build" \
      python3 -m pytest -p no:cacheprovider -q -rs python/tests/test_cuda.py
  else
    note "python  no pytest on this host: python/tests/test_cuda.py not run"
  fi
fi

if [ "$skip_bench" = 0 ]; then
  # Device tensors between two processes: staged (pinned bounce), direct (CUDA-aware UCX) and CUDA
  # IPC, 4 / 64 / 256 MiB, each against its baseline in the same run (issue 15's GPU figures).
  bench_step bench-transport-device 300 "$build/bin/hivemind-bench" transport --device-only --json
  bench_step bench-quant-gpu 300 "$build/bin/hivemind-bench" quant --gpu-only --json
  bench_step bench-throughput-ffn-cuda 300 "$build/bin/hivemind-bench" throughput --preset ffn_forward_backward --device cuda:0 --json
  bench_step bench-throughput-ffn-forward-cuda 300 "$build/bin/hivemind-bench" throughput --preset ffn_forward --device cuda:0 --json
  # The NCCL one-member round next to the transport rounds (and MPI_Allreduce where mpirun is).
  bench_step bench-allreduce 300 "$build/bin/hivemind-bench" allreduce --json
  if command -v ucx_perftest >/dev/null && [ -n "$archive" ]; then
    # Baseline for device-to-device transfers between two processes on this host (cuda_ipc).
    # The client retries until the server listens (at most 5 s), then the server exits with it.
    step perftest-cuda-am-bw 120 bash -c 'ucx_perftest -p 13337 & server=$!
      for attempt in $(seq 50); do
        ucx_perftest 127.0.0.1 -p 13337 -t ucp_am_bw -m cuda,cuda -s 4194304 -n 200 && break
        sleep 0.1
      done
      wait "$server"'
  fi
fi

# The UCX generation clusters run, built CUDA-aware here from the source gpu-stage.sh configured, and the
# transport suites against it in their own tree (the last step: the earlier ones matter more).
ucx_source=$(ls .gpu/ucx-*-configured.tgz 2>/dev/null | head -n 1 || true)
if [ -n "$ucx_source" ] && [ "$build_only" = 0 ]; then
  if step ucx-source-build 420 env HIVEMIND_UCX_CACHE="$PWD/.gpu/cache" ./scripts/ucx-from-source.sh "$ucx_source"; then
    new_ucx=$(tail -n 1 "$logs/ucx-source-build.log")
    note "ucx     $(basename "$ucx_source") built in $new_ucx ($("$new_ucx/bin/ucx_info" -v | sed -n 's/^# Library version: //p'))"
    # Its libraries and modules ahead of the archive's 1.13 ones that the earlier steps put on the paths.
    ucx_env=(env PKG_CONFIG_PATH="$new_ucx/lib/pkgconfig" LD_LIBRARY_PATH="$new_ucx/lib:${LD_LIBRARY_PATH:-}"
             UCX_MODULE_DIR="$new_ucx/lib/ucx" PATH="$new_ucx/bin:$PATH" HIVEMIND_BUILD_DIR="$PWD/$build-ucx-source")
    step ucx-source-configure 300 "${ucx_env[@]}" "${configure[@]}" -B "$build-ucx-source" \
      ${torch_prefix:+"-DCMAKE_PREFIX_PATH=$torch_prefix"} ${deps:+"-DCMAKE_PREFIX_PATH=${torch_prefix:+$torch_prefix;}$deps"} \
      -DHIVEMIND_WITH_PYTHON=OFF -DHIVEMIND_TEST_MODULES=transport &&
      step ucx-source-build-tests 600 cmake --build "$build-ucx-source" -j "$jobs" --target transport_test_server \
        transport_rpc_test transport_fault_test transport_gpu_test &&
      for t in transport_rpc_test transport_fault_test transport_gpu_test; do
        step "ucx-source-$t" 300 "${ucx_env[@]}" "$build-ucx-source/tests/$t"
        grep -hE '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ tests?[,.]' "$logs/ucx-source-$t.log" | sed "s/^/        ucx-source $t /" >>"$summary"
      done
  fi
fi

note "gpu-check: $failures failed step(s), $(($(date +%s) - started)) s in all; logs in $steps_log and $logs/"
[ "$failures" -eq 0 ]
