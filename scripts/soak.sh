#!/usr/bin/env bash
# soak.sh: a swarm under steady load for a while; checks that it stays healthy and prints the figures.
#
#   scripts/soak.sh [--minutes M] [--build-dir DIR] [--trainers T]
#
# Starts one hivemind-dht, 2 hivemind-server processes (expert.0.[0:4] and expert.1.[0:4]: ffn, hidden
# 64, SGD) and T (default 8) soak_trainer processes (build/tests/soak_trainer), all on 127.0.0.1 with
# ports picked by the kernel. Each trainer calls every expert in turn (forward, then backward) for the
# whole run and accounts for every request: answered, failed with an explicit error, or lost (no
# completion by its deadline). Checks:
#   - every request answered: failed = lost = malformed = 0 (no server is stopped during a soak, so an
#     error reply is a bug too; the counts are printed by error code);
#   - no server restart: both server PIDs alive from start to end, then exit 0 on SIGTERM (drain);
#   - server resident memory flat after warm-up: VmRSS from /proc/PID/status at the end of warm-up
#     (the first 20% of the run, at least 10 s) and at the end; growth allowed: 16 MiB + 10% (allocator
#     and LibTorch caches settle in steps; a leak of one request's tensors, ~8 KiB, per request would
#     exceed it within the first minute at the rates seen here).
# Default --minutes 5 (CI-sized: 2 servers and 8 trainers fit 2 cores); longer by flag. It is not part of
# test.sh (CI has 30 minutes for everything); its figures are recorded in docs/benchmarks.md.
# Servers also expose --metrics-port; their request counts, scraped with curl at the end, must equal the
# trainers' (every request reached a server and was counted once).
# Prints one "soak:" line per figure and "soak: passed" or "soak: FAILED (...)"; exit 0 or 1.
set -u
cd "$(dirname "$0")/.."
minutes=5
build=build
trainers=8
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --trainers) trainers=$2; shift 2 ;;
    *) echo "usage: $0 [--minutes M] [--build-dir DIR] [--trainers T]" >&2; exit 2 ;;
  esac
done
bin=$build/bin
for p in "$bin/hivemind-dht" "$bin/hivemind-server" "$build/tests/soak_trainer"; do
  [ -x "$p" ] || { echo "soak: $p is not built" >&2; echo "soak: FAILED (not built)"; exit 1; }
done
seconds=$(awk -v m="$minutes" 'BEGIN {printf "%d", m * 60}')
warmup=$(( seconds / 5 > 10 ? seconds / 5 : 10 ))

run=$(mktemp -d /tmp/hivemind-soak.XXXXXX)
pids=()
verdict=1
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$verdict" = 0 ]; then rm -rf "$run"; else echo "soak: logs kept in $run" >&2; fi
}
trap cleanup EXIT
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fail() { echo "soak: FAILED ($*)"; exit 1; }

"$bin/hivemind-dht" --host 127.0.0.1 --port 0 --bootstrap-file "$run/dht.addr" >"$run/dht.log" 2>&1 &
dht_pid=$!
pids+=("$dht_pid")
for _ in $(seq 300); do [ -s "$run/dht.addr" ] && break; sleep 0.1; done
[ -s "$run/dht.addr" ] || fail "the DHT node did not start (see $run/dht.log)"
peer=$(grep -v '^#' "$run/dht.addr" | head -n1)

server_pids=()
for s in 0 1; do
  "$bin/hivemind-server" --expert_cls ffn --hidden_dim 64 --expert_pattern "expert.$s.[0:4]" \
    --optimizer sgd --lr 0.0001 --max_batch_size 4096 --initial_peers "$peer" --host 127.0.0.1 --port 0 \
    --update_period 5 --stats_report_interval 0 --cpu_bind none --metrics-port 0 >"$run/server-$s.log" 2>&1 &
  server_pids+=($!)
  pids+=($!)
done

t0=$(date +%s)
trainer_pids=()
for t in $(seq 0 $((trainers - 1))); do
  "$build/tests/soak_trainer" --bootstrap-file "$run/dht.addr" --grid 2,4 --hidden-dim 64 --batch-size 32 \
    --seconds "$seconds" --seed $((t + 1)) >"$run/trainer-$t.log" 2>&1 &
  trainer_pids+=($!)
  pids+=($!)
done

# Warm-up, then the first memory sample; then sample every 10 s until the trainers finish.
sleep "$warmup"
declare -A rss_warm rss_max
for i in 0 1; do
  pid=${server_pids[$i]}
  kill -0 "$pid" 2>/dev/null || fail "server $i died during warm-up (see $run/server-$i.log)"
  rss_warm[$i]=$(rss_kib "$pid")
  rss_max[$i]=${rss_warm[$i]}
done
alive=1
while [ "$alive" = 1 ]; do
  alive=0
  for pid in "${trainer_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  for i in 0 1; do
    pid=${server_pids[$i]}
    kill -0 "$pid" 2>/dev/null || fail "server $i (pid $pid) exited during the soak: a restart would be needed"
    r=$(rss_kib "$pid")
    [ "$r" -gt "${rss_max[$i]}" ] && rss_max[$i]=$r
    echo "$(( $(date +%s) - t0 )) $i $r" >>"$run/rss.txt"
  done
  [ "$alive" = 1 ] && sleep 10
  [ $(( $(date +%s) - t0 )) -gt $(( seconds + 120 )) ] && fail "trainers still running 120 s after the end"
done
declare -A rss_end
for i in 0 1; do rss_end[$i]=$(rss_kib "${server_pids[$i]}"); done
# The servers' own account, scraped over HTTP: requests and errors over all experts and methods.
declare -A served served_errors
for i in 0 1; do
  url=$(sed -n 's/.*hivemind-server ready:.*, metrics \(http[^ ]*\).*/\1/p' "$run/server-$i.log" | head -n1)
  scrape=$(curl --silent --fail --max-time 10 "$url" 2>/dev/null) || { problems_scrape="server $i: no metrics at '$url'"; continue; }
  served[$i]=$(awk '/^hivemind_expert_requests_total/ {s += $2} END {printf "%d", s}' <<<"$scrape")
  served_errors[$i]=$(awk '/^hivemind_expert_errors_total/ {s += $2} END {printf "%d", s}' <<<"$scrape")
done
elapsed=$(( $(date +%s) - t0 ))

problems=()
[ -n "${problems_scrape:-}" ] && problems+=("$problems_scrape")
tot_req=0 tot_ok=0 tot_failed=0 tot_lost=0 tot_malformed=0
for t in $(seq 0 $((trainers - 1))); do
  wait "${trainer_pids[$t]}"
  rc=$?
  line=$(grep -m1 '^soak_trainer:' "$run/trainer-$t.log")
  [ -n "$line" ] || { problems+=("trainer $t printed no summary (exit $rc)"); continue; }
  [ "$rc" = 0 ] || problems+=("trainer $t: $line")
  get() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$line"; }
  tot_req=$((tot_req + $(get requests))); tot_ok=$((tot_ok + $(get answered)))
  tot_failed=$((tot_failed + $(get failed))); tot_lost=$((tot_lost + $(get lost)))
  tot_malformed=$((tot_malformed + $(get malformed)))
done

# No restart: the same PIDs are still there; then they must drain and exit 0 on SIGTERM.
for i in 0 1; do
  kill -TERM "${server_pids[$i]}"
  wait "${server_pids[$i]}"
  rc=$?
  [ "$rc" = 0 ] || problems+=("server $i exited with $rc after SIGTERM")
done

echo "soak: ${minutes} min (${elapsed} s measured), 2 servers x 4 ffn experts (hidden 64), $trainers trainers, batch 32"
echo "soak: requests $tot_req, answered $tot_ok, failed $tot_failed, lost $tot_lost, malformed $tot_malformed" \
  "($(awk -v n="$tot_req" -v s="$seconds" 'BEGIN {printf "%.0f", n / s}') requests/s)"
grep -h '^soak_trainer:' "$run"/trainer-*.log | sed 's/^soak_trainer:/soak:   trainer:/'
for i in 0 1; do
  echo "soak: server $i metrics: ${served[$i]:-?} requests, ${served_errors[$i]:-?} errors"
done
served_total=$(( ${served[0]:-0} + ${served[1]:-0} ))
# Every request a trainer counted reached a server (failures aside); the servers saw no other traffic.
[ "$served_total" = "$tot_req" ] || problems+=("servers counted $served_total requests, trainers sent $tot_req")
for i in 0 1; do
  warm=${rss_warm[$i]} end=${rss_end[$i]} max=${rss_max[$i]}
  echo "soak: server $i VmRSS after warm-up ($warmup s) $((warm / 1024)) MiB, at end $((end / 1024)) MiB," \
    "max $((max / 1024)) MiB, growth $(( (end - warm) / 1024 )) MiB"
  limit=$(( warm + 16384 + warm / 10 ))
  [ "$end" -le "$limit" ] || problems+=("server $i resident memory grew from $warm to $end KiB (limit $limit)")
done
[ "$tot_lost" = 0 ] || problems+=("$tot_lost requests never completed")
[ "$tot_failed" = 0 ] || problems+=("$tot_failed requests failed")
[ "$tot_ok" -gt 0 ] || problems+=("nothing was answered")
if [ ${#problems[@]} = 0 ]; then
  verdict=0
  echo "soak: passed"
  exit 0
fi
printf 'soak: problem: %s\n' "${problems[@]}"
echo "soak: FAILED (${#problems[@]} problem(s))"
exit 1
