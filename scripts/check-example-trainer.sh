#!/usr/bin/env bash
# Installs the release build into a temporary prefix, builds examples/trainer against it through
# find_package(hivemind), starts a hivemind-server from that prefix on 127.0.0.1 (any free port), and
# trains the example against it for a few steps. Proves a trainer that links hivemind::client directly
# works end to end with the installed package. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d /tmp/hivemind-install.XXXXXX)
work=$(mktemp -d /tmp/hivemind-trainer.XXXXXX)
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$prefix" "$work"
}
trap cleanup EXIT

cmake --install build --prefix "$prefix" >/dev/null
echo "check-example-trainer: installed into $prefix"

torch_dir=$(grep -E "^Torch_DIR:" build/CMakeCache.txt | cut -d= -f2)
cmake -S examples/trainer -B "$work/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DTorch_DIR="$torch_dir" >/dev/null
cmake --build "$work/cmake" >/dev/null

server_bin="$prefix/bin/hivemind-server"
[[ -x "$server_bin" ]] || { echo "check-example-trainer: $server_bin was not installed" >&2; exit 1; }
mkfifo "$work/server.out"
"$server_bin" --expert_uids expert.0 --expert_cls ffn --hidden_dim 64 --host 127.0.0.1 --port 0 \
  --compression none --cpu_bind none --stats_report_interval 0 --grace_period 10 >"$work/server.out" &
server_pid=$!
exec 3<"$work/server.out"
address=""
# The server prints "hivemind-server ready: 1 expert(s) at tcp://127.0.0.1:PORT[, DHT node ...]".
while IFS= read -r -t 120 line <&3; do
  if [[ "$line" == "hivemind-server ready:"* ]]; then
    address=${line#* at }
    address=${address%%,*}
    break
  fi
done
[[ -n "$address" ]] || { echo "check-example-trainer: the server did not get ready" >&2; exit 1; }
cat <&3 >/dev/null &  # keep draining the server's stdout so it never blocks on a full pipe
echo "check-example-trainer: hivemind-server ready at $address"

timeout 300 "$work/cmake/hivemind_trainer_example" --server "$address" --uid expert.0 --hidden 64 --steps 20 \
  | tail -n 3

kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
echo "check-example-trainer: example trainer built against the installed package and trained against hivemind-server"
