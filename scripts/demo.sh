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
# Usage: ./scripts/demo.sh [--kill-server-at STEP] [--trainers N [--kill-trainer-at STEP]]
#                          [other hivemind-demo flags]
#   --kill-server-at STEP   SIGKILLs the second expert server at that step: training carries on with the
#                           first server's experts (the dead ones are masked).
#   --trainers N            N data-parallel trainers over the same experts (same initial weights,
#                           different batches), averaging their dense parameters every 5 steps under
#                           the key demo.dense (docs/averaging.md). Each trainer's lines are prefixed
#                           [trainer I]; the demo succeeds when every trainer still running reaches 95%.
#   --kill-trainer-at STEP  SIGKILLs the last trainer at trainer 0's step STEP: the others keep
#                           training, and their averaging rounds go on without it.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh

bin=build/bin
run=$(mktemp -d /tmp/hivemind-demo.XXXXXX)
pids=()
trainer_pids=()  # --trainers N: trainers 1..N-1, in the background
cleanup() {
  local status=$?
  for pid in "${pids[@]}" "${trainer_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}" "${trainer_pids[@]}"; do
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
trainers=1
kill_trainer_at=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kill-server-at) kill_at=$2; shift 2 ;;
    --kill-server-at=*) kill_at=${1#*=}; shift ;;
    --trainers) trainers=$2; shift 2 ;;
    --trainers=*) trainers=${1#*=}; shift ;;
    --kill-trainer-at) kill_trainer_at=$2; shift 2 ;;
    --kill-trainer-at=*) kill_trainer_at=${1#*=}; shift ;;
    *) trainer_args+=("$1"); shift ;;
  esac
done
if ! [[ "$trainers" =~ ^[1-9][0-9]*$ ]] || [ "$trainers" -gt 16 ]; then
  echo "demo: --trainers takes a number from 1 to 16, got '$trainers'" >&2
  exit 2
fi
if [ -n "$kill_trainer_at" ] && [ "$trainers" -lt 2 ]; then
  echo "demo: --kill-trainer-at needs --trainers 2 or more (it kills the last trainer)" >&2
  exit 2
fi
if [ -n "$kill_at" ] && [ -n "$kill_trainer_at" ]; then
  echo "demo: give --kill-server-at or --kill-trainer-at, not both" >&2
  exit 2
fi

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
  trainer_args+=(--kill-at "$kill_at" --kill-pid "$server_b")
fi

echo
if [ "$trainers" -eq 1 ]; then
  echo "=== demo: training (RemoteMixtureOfExperts over 16 remote experts)"
  $bin/hivemind-demo --bootstrap-file "$run/dht.addr" --wait-experts 16 "${trainer_args[@]}"
else
  echo "=== demo: $trainers data-parallel trainers (RemoteMixtureOfExperts over 16 remote experts," \
       "dense parameters averaged every 5 steps)"
  average=(--average-key demo.dense --average-every 5)
  # Each trainer prints one line per round itself; the averaging module's own log of the same round
  # (info) is left out unless asked for.
  export HIVEMIND_LOG_LEVEL=${HIVEMIND_LOG_LEVEL:-info,averaging=warn}
  # Trainers 1..N-1 in the background, each line tagged; trainer 0 in the foreground (it kills the
  # last one when asked).
  for i in $(seq $((trainers - 1)) -1 1); do
    $bin/hivemind-demo --bootstrap-file "$run/dht.addr" --wait-experts 16 --trainer-index "$i" \
      "${average[@]}" "${trainer_args[@]}" > >(sed -u "s/^/[trainer $i] /") 2>&1 &
    trainer_pids[$i]=$!
  done
  killed=""
  first_args=("${average[@]}" "${trainer_args[@]}")
  if [ -n "$kill_trainer_at" ]; then
    killed=$((trainers - 1))
    first_args+=(--kill-at "$kill_trainer_at" --kill-pid "${trainer_pids[$killed]}")
  fi
  status=0
  $bin/hivemind-demo --bootstrap-file "$run/dht.addr" --wait-experts 16 --trainer-index 0 \
    "${first_args[@]}" > >(sed -u "s/^/[trainer 0] /") 2>&1 || status=$?
  for i in $(seq 1 $((trainers - 1))); do
    code=0
    { wait "${trainer_pids[$i]}"; } 2>/dev/null || code=$?  # (bash's "Killed" notice: ours is below)
    if [ "$i" = "$killed" ]; then
      echo "  trainer $i was killed on purpose (exit $code)"
    elif [ "$code" -ne 0 ]; then
      echo "  trainer $i failed (exit $code)"
      status=1
    fi
  done
  [ "$status" -eq 0 ] || { echo "demo: a trainer did not reach its target"; exit 1; }
fi

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
