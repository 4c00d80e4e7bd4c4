#!/usr/bin/env bash
# selftest.sh: checks the Slurm side of hivemind-cpp on a real, private, one-machine Slurm.
#
#   slurm/ci/selftest.sh                 # one node
#   slurm/ci/selftest.sh --netns 3       # three nodes, each in its own network namespace and IP
#   HIVEMIND_BIN=build/bin slurm/ci/selftest.sh   # the templates with the real programs
#
# Starts the cluster (start-local-cluster.sh), then:
#   1. srun -n4 through srun-wrap.sh: every rank prints HIVEMIND_RANK/WORLD_SIZE, all four must appear
#      (with --netns: srun -N3, and three distinct node addresses);
#   2. signals as Slurm delivers them: `scancel --signal=USR1` on a step reaches each rank exactly once
#      (not twice: srun-wrap.sh must not forward what Slurm already sent), `scancel --signal=TERM`
#      lets each rank exit 0;
#   3. one `sbatch --wait` of slurm/templates/swarm.sbatch. Without HIVEMIND_BIN it runs the test
#      doubles of slurm/ci/testbin (same command lines as the real programs; they record what they got)
#      and checks the order and arguments: the DHT wrote the bootstrap file, every server and trainer
#      got its address, servers and DHT were stopped with SIGTERM. With --netns the doubles refuse
#      loopback addresses, as a peer on another host could not dial them.
# then stops the cluster. Exit 0 when every check passed, 1 when one failed, 77 when skipped (no
# Slurm, not root, or namespaces refused for --netns).
# The checks are functions called through check(): shellcheck cannot see them being reached.
# shellcheck disable=SC2317
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
netns=0
while [ $# -gt 0 ]; do
  case $1 in
    --netns) netns=$2; shift 2 ;;
    *) echo "usage: $0 [--netns N]" >&2; exit 2 ;;
  esac
done

started=$(date +%s.%N)
elapsed() { awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f", e - s}'; }
say() { echo "selftest [$(elapsed)s]: $*" >&2; }
failures=0
check() {
  local what=$1
  shift
  if "$@"; then say "ok: $what"; else say "FAILED: $what"; failures=$((failures + 1)); fi
}

work=$(mktemp -d /tmp/hivemind-selftest.XXXXXX)
start_args=()
[ "$netns" != 0 ] && start_args=(--netns "$netns")
env_out=$("$here/start-local-cluster.sh" "${start_args[@]}")
rc=$?
if [ $rc -ne 0 ]; then
  rm -rf "$work"
  [ $rc = 77 ] && say "skipped"
  exit $rc
fi
eval "$env_out"
cleanup() {
  "$here/stop-local-cluster.sh" >&2
  rm -rf "$work"
}
trap cleanup EXIT
say "cluster up ($SLURM_CONF)"

client=()
[ -n "${HIVEMIND_SLURM_NETNS:-}" ] && client=(nsenter --net="$HIVEMIND_SLURM_NETNS")
nodes=1
[ "$netns" != 0 ] && nodes=$netns
wrap=$root/slurm/srun-wrap.sh

# 1. Ranks through srun-wrap.sh.
ranks_ok() {
  local out expected="" r
  # shellcheck disable=SC2016  # expanded by each rank's shell
  out=$(timeout 60 "${client[@]}" srun -N "$nodes" -n 4 --kill-on-bad-exit=1 "$wrap" \
    sh -c 'echo "rank=$HIVEMIND_RANK/$HIVEMIND_WORLD_SIZE node=$HIVEMIND_NODE_RANK addr=$HIVEMIND_NODE_ADDR"' | sort)
  printf '  %s\n' "${out//$'\n'/$'\n'  }" >&2
  for r in 0 1 2 3; do expected+="rank=$r/4"$'\n'; done
  [ "$(cut -d' ' -f1 <<<"$out")" = "${expected%$'\n'}" ] || return 1
  if [ "$netns" != 0 ]; then
    [ "$(awk '{print $3}' <<<"$out" | sort -u | wc -l)" = "$nodes" ] || { say "expected $nodes distinct node addresses"; return 1; }
    ! grep -q 'addr=127\.' <<<"$out" || { say "a rank announces a loopback address"; return 1; }
  fi
}
check "srun -n4 maps ranks through srun-wrap.sh" ranks_ok

# 2. Signals from Slurm reach each rank exactly once.
signals_ok() {
  local dir=$work/signals step="" pid rc r
  mkdir -p "$dir"
  cat >"$dir/child.sh" <<'EOF'
#!/bin/bash
n=0
mark() { echo "$2" >"$DIR/$1.tmp" && mv "$DIR/$1.tmp" "$DIR/$1"; }
trap 'n=$((n + 1)); mark usr1-$HIVEMIND_RANK $n' USR1
trap 'mark term-$HIVEMIND_RANK "usr1=$n"; exit 0' TERM
mark ready-$HIVEMIND_RANK x
while :; do sleep 0.1 & wait $!; done
EOF
  chmod +x "$dir/child.sh"
  DIR=$dir "${client[@]}" srun -N "$nodes" -n 2 --job-name=selftest-signals --export=ALL,DIR="$dir" \
    "$wrap" "$dir/child.sh" &
  pid=$!
  wait_files() {
    local tries=200 f
    while [ "$tries" -gt 0 ]; do
      for f in "$@"; do [ -e "$f" ] || break; done
      [ -e "$f" ] && return 0
      sleep 0.05
      tries=$((tries - 1))
    done
    return 1
  }
  wait_files "$dir/ready-0" "$dir/ready-1" || { say "ranks did not start"; kill "$pid"; return 1; }
  step=$("${client[@]}" squeue -s -h -o '%i %j' | awk '$2 == "selftest-signals" {print $1; exit}')
  "${client[@]}" scancel --signal=USR1 "$step"
  wait_files "$dir/usr1-0" "$dir/usr1-1" || { say "USR1 did not arrive"; kill "$pid"; return 1; }
  "${client[@]}" scancel --signal=TERM "$step"
  wait "$pid"
  rc=$?
  for r in 0 1; do
    [ "$(cat "$dir/term-$r" 2>/dev/null)" = "usr1=1" ] || { say "rank $r: $(cat "$dir/term-$r" 2>/dev/null || echo 'no TERM')"; return 1; }
  done
  [ "$rc" = 0 ] || { say "srun exited with $rc"; return 1; }
}
check "scancel --signal USR1/TERM reaches each rank exactly once; ranks exit 0" signals_ok

# 3. One sbatch --wait of the one-allocation template.
swarm_ok() {
  local dir=$work/swarm status f
  mkdir -p "$dir"
  local bin=${HIVEMIND_BIN:-$root/slurm/ci/testbin}
  (
    cd "$dir" || exit 1
    HIVEMIND_HOME=$root HIVEMIND_BIN=$bin SWARM_SERVER_WARMUP=0 SWARM_GRACE=20 SWARM_STEPS=3 \
      SWARM_HIDDEN_DIM=64 TESTBIN_ALLOW_LOOPBACK=$([ "$netns" != 0 ] && echo 0 || echo 1) \
      timeout 120 "${client[@]}" sbatch --wait --nodes="$nodes" --ntasks=4 --time=5 \
      --export=ALL,SWARM_SERVERS=2 "$root/slurm/templates/swarm.sbatch" >/dev/null
  )
  status=$?
  sed 's/^/  /' "$dir"/hivemind-swarm-*.out >&2
  [ "$status" = 0 ] || { say "swarm.sbatch exited with $status"; return 1; }
  [ -n "${HIVEMIND_BIN:-}" ] && return 0  # real programs: their exit status is the check
  local record
  record=$(echo "$dir"/.hivemind/*/record)
  for f in hivemind-dht.0 hivemind-server.0 hivemind-server.1 hivemind-demo.0 hivemind-demo.1; do
    [ -f "$record/$f" ] || { say "missing record $f"; return 1; }
    ! grep -q '^error' "$record/$f" || { say "$f: $(grep '^error' "$record/$f")"; return 1; }
  done
  for f in hivemind-dht.0 hivemind-server.0 hivemind-server.1 hivemind-demo.0 hivemind-demo.1; do
    grep -q '^swarm key: /.*/key/swarm.key$' "$record/$f" || { say "$f did not get the job's swarm key"; return 1; }
  done
  grep -q '^TERM' "$record/hivemind-dht.0" || { say "the DHT was not stopped with SIGTERM"; return 1; }
  for f in 0 1; do
    grep -q "^TERM" "$record/hivemind-server.$f" || { say "server $f was not stopped with SIGTERM"; return 1; }
    grep -q "experts expert.$f.\[0:4\]" "$record/hivemind-server.$f" || { say "server $f got the wrong experts"; return 1; }
    grep -q "^trained 3 steps against [0-9]" "$record/hivemind-demo.$f" || { say "trainer $f did not get the DHT address"; return 1; }
  done
}
check "sbatch --wait slurm/templates/swarm.sbatch" swarm_ok

if [ $failures = 0 ]; then say "all checks passed"; exit 0; fi
say "$failures check(s) failed"
exit 1
