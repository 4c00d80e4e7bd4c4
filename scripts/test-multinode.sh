#!/usr/bin/env bash
# test-multinode.sh: the multi-node MoE test (build/tests/moe_swarm_test) under every launcher we have.
#
#   scripts/test-multinode.sh [--build-dir DIR] [--only spawn|mpirun|srun|signals|sbatch|installed|trainers|netns]...
#
# Variants, each reported as one line "multinode: <variant> passed|failed|skipped (<why>)":
#   spawn   moe_swarm_test --spawn 4 (our own launcher; always)
#   mpirun  mpirun -np 4 with loopback-only MCA settings (when mpirun exists)
#   srun    srun -n 4 on a private one-host Slurm (slurm/ci/start-local-cluster.sh; when Slurm is
#           installed and we are root)
#   signals on the same cluster: hivemind-server as a step; `scancel --signal=USR1` must checkpoint it
#           and leave it serving, `scancel --signal=TERM` must drain it to exit 0
#           (slurm/ci/server-signals.sh)
#   sbatch  on the same cluster: one `sbatch --wait` of slurm/templates/swarm.sbatch with the real
#           programs (HIVEMIND_BIN=build/bin: hivemind-dht, hivemind-server, hivemind-demo) and a short
#           trainer run
#   installed  on the same cluster: `cmake --install` into a temporary prefix, then one `sbatch --wait`
#           of the INSTALLED share/hivemind/slurm/templates/swarm.sbatch, with neither HIVEMIND_HOME
#           nor HIVEMIND_BIN (the template finds itself and the installed programs), running a user
#           trainer (the installed hivemind-example-trainer, not hivemind-demo; --trainer-cmd) against
#           one server hosting a user's expert class written in Python (exported to TorchScript), its
#           options given whole through --expert-args
#   trainers  ./scripts/demo.sh --trainers 3 --kill-trainer-at 20 (build/ only): three data-parallel
#           trainers averaging their dense parameters through the DHT; the last one is SIGKILLed at
#           step 20 and the other two must keep averaging (rounds of 2 after rounds of 3) and each
#           reach the demo's held-out target
#   netns   three "hosts" with their own IPs (start-local-cluster.sh --netns 3: one slurmd per network
#           namespace, 10.78.0.0/24), srun -N 3 -n 4 with --host 0.0.0.0: an address announced as
#           127.0.0.1 or 0.0.0.0 cannot be dialled from another "host" and fails the test. Skipped
#           with the reason where namespaces are refused (exit 77 of the cluster script).
# Ends with "multinode: N passed, M failed[, K skipped]"; exit 1 when any variant failed. Logs of a
# failed variant are printed (the first error line of every rank, then the tails).
# Ports: Slurm on 23517/23518 (one host) and 23527/23528 (netns); the swarm template's DHT on 23537,
# its servers from 23540 (the installed variant's: 23557, from 23560, so a server of the sbatch variant
# still draining cannot collide); everything else picks a free port on 127.0.0.1.
set -u
cd "$(dirname "$0")/.."
root=$PWD
build=build
only=()
while [ $# -gt 0 ]; do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    *) echo "usage: $0 [--build-dir DIR] [--only spawn|mpirun|srun|signals|sbatch|installed|trainers|netns]..." >&2; exit 2 ;;
  esac
done
# The `installed` variant hosts a user's own expert class: written in Python, exported to TorchScript
# with `python3 -m hivemind_cpp.export_expert` (the build tree's package) and passed whole through
# SWARM_EXPERT_ARGS, as docs/experts.md tells a user to.
write_user_expert() {  # write_user_expert <dir>: prints the --expert-args for the file it made
  local dir=$1 python
  python=$(sed -n 's/^HIVEMIND_PYTHON_EXECUTABLE:INTERNAL=//p' "$root/$build/CMakeCache.txt")
  [ -n "$python" ] && [ -d "$root/$build/python/hivemind_cpp" ] || return 1
  cat >"$dir/my_experts.py" <<'PY'
import torch
import hivemind_cpp


@hivemind_cpp.register_expert_class("residual_mlp", lambda batch, hidden: torch.empty(batch, hidden))
class ResidualMLP(torch.nn.Module):
    def __init__(self, hidden_dim):
        super().__init__()
        self.up = torch.nn.Linear(hidden_dim, 2 * hidden_dim)
        self.down = torch.nn.Linear(2 * hidden_dim, hidden_dim)

    def forward(self, x):
        return x + self.down(torch.relu(self.up(x)))
PY
  (cd "$dir" && PYTHONPATH="$root/$build/python" "$python" -m hivemind_cpp.export_expert my_experts.py \
    residual_mlp --hidden_dim 64 -o residual_mlp.pt >&2) || return 1
  echo "--expert_cls torchscript --module_path $dir/residual_mlp.pt --reinit"
}
test_bin=$root/$build/tests/moe_swarm_test
if [ ! -x "$test_bin" ]; then
  echo "multinode: $test_bin is not built (cmake --build $build --target moe_swarm_test)" >&2
  echo "multinode: 0 passed, 1 failed"
  exit 1
fi

work=$(mktemp -d /tmp/hivemind-multinode.XXXXXX)
passed=0 failed=0 skipped=0
cluster_up=""
cleanup() {
  if [ -n "$cluster_up" ]; then slurm/ci/stop-local-cluster.sh >/dev/null 2>&1 || true; fi
  if [ "$failed" = 0 ]; then rm -rf "$work"; else echo "multinode: logs kept in $work" >&2; fi
}
trap cleanup EXIT

wanted() {
  [ ${#only[@]} = 0 ] && return 0
  local v
  for v in "${only[@]}"; do [ "$v" = "$1" ] && return 0; done
  return 1
}
elapsed_since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}'; }
show_logs() {
  local dir=$1
  echo "---- $dir: first error of every rank" >&2
  grep -h -m1 -E 'FAILED|error' "$dir"/*.log 2>/dev/null | sed 's/^/  /' >&2
  for f in "$dir"/*.log; do
    [ -f "$f" ] || continue
    echo "---- $f (tail)" >&2
    tail -n 15 "$f" | sed 's/^/  /' >&2
  done
}
# run_variant NAME LOGDIR CMD...: runs CMD with a deadline, prints the verdict line.
run_variant() {
  local name=$1 logs=$2
  shift 2
  mkdir -p "$logs"
  local t0 rc
  t0=$(date +%s.%N)
  timeout -k 5 120 "$@" >"$logs/launcher.log" 2>&1
  rc=$?
  if [ $rc = 0 ]; then
    echo "multinode: $name passed ($(elapsed_since "$t0") s)"
    passed=$((passed + 1))
  else
    echo "multinode: $name failed (exit $rc after $(elapsed_since "$t0") s)"
    failed=$((failed + 1))
    show_logs "$logs"
  fi
}
skip() {
  echo "multinode: $1 skipped ($2)"
  skipped=$((skipped + 1))
}

# 1. Our own launcher.
if wanted spawn; then
  run_variant spawn "$work/spawn" "$test_bin" --spawn 4 --log-dir "$work/spawn"
fi

# 2. OpenMPI's mpirun (loopback only: the machine may have interfaces nobody should use).
if wanted mpirun; then
  if command -v mpirun >/dev/null; then
    run_variant mpirun "$work/mpirun" \
      mpirun --allow-run-as-root --oversubscribe --mca btl self,tcp --mca btl_tcp_if_include lo \
      --mca oob_tcp_if_include lo -np 4 "$test_bin" --rendezvous-dir "$work/mpirun/rendezvous"
  else
    skip mpirun "mpirun is not installed"
  fi
fi

# 3 + 4. A real one-host Slurm.
if wanted srun || wanted signals || wanted sbatch || wanted installed; then
  env_out=$(slurm/ci/start-local-cluster.sh --port 23517 2>"$work/cluster.log")
  rc=$?
  if [ $rc = 77 ]; then
    reason=$(grep -m1 skipped "$work/cluster.log" | sed 's/.*skipped: //')
    wanted srun && skip srun "${reason:-no Slurm here}"
    wanted signals && skip signals "${reason:-no Slurm here}"
    wanted sbatch && skip sbatch "${reason:-no Slurm here}"
    wanted installed && skip installed "${reason:-no Slurm here}"
  elif [ $rc != 0 ]; then
    wanted srun && { echo "multinode: srun failed (the local cluster did not start)"; failed=$((failed + 1)); }
    wanted signals && { echo "multinode: signals failed (the local cluster did not start)"; failed=$((failed + 1)); }
    wanted sbatch && { echo "multinode: sbatch failed (the local cluster did not start)"; failed=$((failed + 1)); }
    wanted installed && { echo "multinode: installed failed (the local cluster did not start)"; failed=$((failed + 1)); }
    sed 's/^/  /' "$work/cluster.log" >&2
  else
    eval "$env_out"
    cluster_up=1
    if wanted srun; then
      run_variant srun "$work/srun" srun -n 4 --kill-on-bad-exit=1 "$test_bin" \
        --rendezvous-dir "$work/srun/rendezvous"
    fi
    if wanted signals; then
      if [ -x "$root/$build/bin/hivemind-server" ]; then
        run_variant signals "$work/signals" slurm/ci/server-signals.sh "$root/$build/bin" "$work/signals"
      else
        skip signals "hivemind-server is not built"
      fi
    fi
    if wanted sbatch; then
      missing=""
      for p in hivemind-dht hivemind-server hivemind-demo; do
        [ -x "$root/$build/bin/$p" ] || missing="$missing $p"
      done
      if [ -n "$missing" ]; then
        skip sbatch "not built:$missing"
      else
        mkdir -p "$work/sbatch"
        # The job's output and .hivemind/<job>/ (bootstrap file, per-rank logs) land in the submit dir.
        run_variant sbatch "$work/sbatch" sh -c "cd '$work/sbatch' && \
          HIVEMIND_HOME='$root' HIVEMIND_BIN='$root/$build/bin' SWARM_SERVER_WARMUP=2 SWARM_GRACE=20 \
          SWARM_STEPS=30 SWARM_HIDDEN_DIM=64 SWARM_DHT_PORT=23537 SWARM_SERVER_PORT=23540 \
          HIVEMIND_NODE_ADDR=127.0.0.1 \
          sbatch --wait --nodes=1 --ntasks=4 --time=5 --export=ALL,SWARM_SERVERS=2 \
            '$root/slurm/templates/swarm.sbatch' >/dev/null; rc=\$?; \
          cat hivemind-swarm-*.out; for f in .hivemind/*/logs/*; do cp \"\$f\" \"\$(basename \"\$f\").log\"; done 2>/dev/null; exit \$rc"
      fi
    fi
    if wanted installed; then
      mkdir -p "$work/installed/submit"
      if [ ! -x "$root/$build/bin/hivemind-example-trainer" ]; then
        skip installed "hivemind-example-trainer is not built"
      elif ! installed_experts=$(write_user_expert "$work/installed/submit"); then
        skip installed "the Python package is not built (HIVEMIND_WITH_PYTHON), so no user expert can be exported"
      else
        # Submitted from a directory outside the tree, with no HIVEMIND_HOME or HIVEMIND_BIN: only the
        # installed package is used. The trainer must find expert.0.0 through the DHT and make its
        # loss go down; its exit status is the job's.
        run_variant installed "$work/installed" sh -c "cmake --install '$root/$build' --prefix '$work/installed/prefix' >/dev/null && \
          cd '$work/installed/submit' && env -u HIVEMIND_HOME -u HIVEMIND_BIN \
          SWARM_SERVER_WARMUP=0 SWARM_GRACE=20 SWARM_DHT_PORT=23557 SWARM_SERVER_PORT=23560 \
          HIVEMIND_NODE_ADDR=127.0.0.1 \
          sbatch --wait --nodes=1 --ntasks=2 --time=5 --export=ALL,SWARM_SERVERS=1 \
            '$work/installed/prefix/share/hivemind/slurm/templates/swarm.sbatch' \
            --trainer-cmd 'hivemind-example-trainer --uid expert.0.0 --hidden 64 --steps 20 --wait 60' \
            --expert-args '$installed_experts' \
            --server-args '--compression none --cpu_bind none --stats_report_interval 0' >/dev/null; rc=\$?; \
          cat hivemind-swarm-*.out; for f in .hivemind/*/logs/*; do cp \"\$f\" \"../\$(basename \"\$f\").log\"; done 2>/dev/null; \
          grep -h 'trainer: .* steps through expert.0.0' .hivemind/*/logs/* || rc=1; \
          grep -h 'torchscript expert(s), from .*residual_mlp.pt' .hivemind/*/logs/* || rc=1; exit \$rc"
      fi
    fi
    slurm/ci/stop-local-cluster.sh >/dev/null 2>&1
    cluster_up=""
  fi
fi

# 5. Three "hosts", each with its own IP.
# 5. Data-parallel trainers averaging their dense parameters, one of them killed (the demo's own
# script, on the build/ tree it uses).
check_trainers_run() {  # check_trainers_run <demo output>: rounds of 3, then of 2 after the kill
  local log=$1
  grep -q '^\[trainer 0\] step .* averaged with 3 trainer' "$log" &&
    grep -q '^\[trainer 0\] step .*killing' "$log" &&
    sed -n '/^\[trainer 0\] step .*killing/,$p' "$log" | grep -q 'averaged with 2 trainer' &&
    grep -q 'trainer 2 was killed on purpose' "$log" &&
    [ "$(grep -c '^\[trainer [01]\] hivemind-demo: reached' "$log")" = 2 ]
}
if wanted trainers; then
  if [ "$build" != build ]; then
    skip trainers "demo.sh runs the build/ tree, this run tests $build"
  else
    export -f check_trainers_run
    run_variant trainers "$work/trainers" bash -c \
      './scripts/demo.sh --trainers 3 --kill-trainer-at 20 >"$0/demo.log" 2>&1 || { tail -n 40 "$0/demo.log"; exit 1; }
       check_trainers_run "$0/demo.log" || { echo "the demo ran, but its output lacks rounds of 3 then 2, the kill, or two trainers reaching the target"; tail -n 40 "$0/demo.log"; exit 1; }' \
      "$work/trainers"
  fi
fi

if wanted netns; then
  env_out=$(slurm/ci/start-local-cluster.sh --netns 3 --port 23527 2>"$work/netns-cluster.log")
  rc=$?
  if [ $rc = 77 ]; then
    reason=$(grep -m1 -i skipped "$work/netns-cluster.log" | sed 's/.*skipped: //')
    skip netns "${reason:-network namespaces are not permitted here}"
  elif [ $rc != 0 ]; then
    echo "multinode: netns failed (the three-host cluster did not start)"
    failed=$((failed + 1))
    sed 's/^/  /' "$work/netns-cluster.log" >&2
  else
    eval "$env_out"
    cluster_up=1
    run_variant netns "$work/netns" nsenter --net="$HIVEMIND_SLURM_NETNS" \
      srun -N 3 -n 4 --kill-on-bad-exit=1 "$test_bin" --host 0.0.0.0 --rendezvous-dir "$work/netns/rendezvous"
    slurm/ci/stop-local-cluster.sh >/dev/null 2>&1
    cluster_up=""
  fi
fi

summary="multinode: $passed passed, $failed failed"
[ "$skipped" != 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" = 0 ]
