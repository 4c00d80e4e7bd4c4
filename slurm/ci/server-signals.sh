#!/usr/bin/env bash
# server-signals.sh: hivemind-server's signal contract as Slurm delivers it, on a running (local) Slurm.
#
#   slurm/ci/server-signals.sh BIN_DIR WORK_DIR
#
# Starts one hivemind-server as a Slurm step (srun -n1), then:
#   scancel --signal=USR1 <step>  -> the server writes a checkpoint and keeps serving
#                                   (what `sbatch --signal=USR1@120` sends before a time limit);
#   scancel --signal=TERM <step>  -> it drains, checkpoints and exits 0, so the step ends COMPLETED.
# Every wait has a deadline. Exit 0 when both held, 1 otherwise (the server's log is printed).
set -u
bin=$1
dir=$2
mkdir -p "$dir"
log=$dir/server.log
name=hm-signals-$$

fail() {
  echo "server-signals: $*" >&2
  sed 's/^/  /' "$log" >&2 2>/dev/null
  [ -n "${srun_pid:-}" ] && kill "$srun_pid" 2>/dev/null
  exit 1
}
# wait_for <seconds> <command...>: polls a condition on a process we do not own (Slurm's), with a deadline.
wait_for() {
  local deadline=$(( $(date +%s) + $1 ))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

srun -n 1 --job-name "$name" "$bin/hivemind-server" --expert_uids ffn.0.0 --hidden_dim 8 --host 127.0.0.1 \
  --port 0 --transport tcp --checkpoint_dir "$dir/ckpt" --cpu_bind none --stats_report_interval 0 \
  --grace_period 20 >"$log" 2>&1 &
srun_pid=$!
wait_for 60 grep -q "hivemind-server ready" "$log" || fail "the server did not become ready"
step=$(squeue -h -s -n "$name" -o %i | head -n1)
[ -n "$step" ] || fail "no step named $name in squeue"

scancel --signal=USR1 "$step" || fail "scancel --signal=USR1 $step failed"
wait_for 60 grep -q "checkpoint written" "$log" || fail "USR1: no checkpoint written"
[ -s "$dir/ckpt/ffn.0.0.pt" ] || fail "USR1: $dir/ckpt/ffn.0.0.pt is missing"
kill -0 "$srun_pid" 2>/dev/null || fail "USR1 stopped the server; it must keep serving"

scancel --signal=TERM "$step" || fail "scancel --signal=TERM $step failed"
wait_for 60 sh -c "! kill -0 $srun_pid 2>/dev/null" || fail "TERM: the step did not end within 60 s"
wait "$srun_pid"
rc=$?
[ "$rc" = 0 ] || fail "TERM: the step ended with $rc, not 0"
grep -q "SIGTERM: draining" "$log" || fail "TERM: the server did not drain"
grep -q "hivemind-server stopped" "$log" || fail "TERM: no clean stop"
echo "server-signals: USR1 checkpointed and kept serving; TERM drained and exited 0 (step $step)"
