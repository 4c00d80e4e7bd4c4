#!/usr/bin/env bash
# The main job: installs missing dependencies, builds, starts a local swarm on this machine and trains a
# Mixture-of-Experts model against it.
#
#   one DHT bootstrap node            build/bin/hivemind-dht
#   two expert servers, 8 experts each build/bin/hivemind-server (ffn experts, hidden 64, Adam)
#   one trainer                        build/bin/hivemind-demo (RemoteMixtureOfExperts, grid 4x4, k_best 4)
#
# The trainer prints step, loss, accuracy, samples/s and the experts answering, and stops once the
# held-out accuracy reaches 95%. Then the swarm is shut down with SIGTERM (servers drain and checkpoint).
#
# Usage: ./scripts/demo.sh [--kill-server-at STEP] [other hivemind-demo flags]
#   --kill-server-at STEP   SIGKILLs the second expert server at that step: training carries on with the
#                           first server's experts (the dead ones are masked).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh

bin=build/bin
run=$(mktemp -d /tmp/hivemind-demo.XXXXXX)
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    echo "demo: failed (exit $status); logs in $run:"
    tail -n 20 "$run"/*.log 2>/dev/null || true
  else
    rm -rf "$run"
  fi
}
trap cleanup EXIT

trainer_args=()
kill_at=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kill-server-at) kill_at=$2; shift 2 ;;
    --kill-server-at=*) kill_at=${1#*=}; shift ;;
    *) trainer_args+=("$1"); shift ;;
  esac
done

echo
echo "=== demo: this machine and build"
$bin/hivemind-info | sed 's/^/  /'

echo
echo "=== demo: starting the swarm (logs in $run)"
$bin/hivemind-dht --host 127.0.0.1 --port 0 --bootstrap-file "$run/dht.addr" >"$run/dht.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do [ -s "$run/dht.addr" ] && break; sleep 0.1; done
[ -s "$run/dht.addr" ] || { echo "demo: the DHT node did not start"; exit 1; }
peer=$(grep -v '^#' "$run/dht.addr" | head -n1)
echo "  dht node         $peer"

server_flags=(--expert_cls ffn --hidden_dim 64 --max_batch_size 4096 --optimizer adam --lr 0.001
              --initial_peers "$peer" --host 127.0.0.1 --port 0 --update_period 2 --expiration 6)
$bin/hivemind-server "${server_flags[@]}" --expert_pattern 'expert.[0:2].[0:4]' \
  --checkpoint_dir "$run/ckpt-a" >"$run/server-a.log" 2>&1 &
pids+=($!)
echo "  expert server A  pid $!  experts expert.[0:2].[0:4]"
$bin/hivemind-server "${server_flags[@]}" --expert_pattern 'expert.[2:4].[0:4]' \
  --checkpoint_dir "$run/ckpt-b" >"$run/server-b.log" 2>&1 &
server_b=$!
pids+=($server_b)
echo "  expert server B  pid $server_b  experts expert.[2:4].[0:4]"

if [ -n "$kill_at" ]; then
  trainer_args+=(--kill-server-at "$kill_at" --kill-pid "$server_b")
fi

echo
echo "=== demo: training (RemoteMixtureOfExperts over 16 remote experts)"
$bin/hivemind-demo --bootstrap-file "$run/dht.addr" --wait-experts 16 "${trainer_args[@]}"

echo
echo "=== demo: shutting the swarm down (SIGTERM: servers drain, checkpoint and leave the DHT)"
for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
codes=()
for pid in "${pids[@]}"; do
  code=0
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" 2>/dev/null || code=$?
  codes+=("$code")
done
pids=()
echo "  exit codes: dht ${codes[0]}, server A ${codes[1]}, server B ${codes[2]}${kill_at:+ (B was killed on purpose)}"
echo "demo: done"
