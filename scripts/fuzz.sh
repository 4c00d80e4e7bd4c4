#!/usr/bin/env bash
# Builds the libFuzzer targets of every network decoder with clang (preset 'fuzz') and runs them.
# Usage: ./scripts/fuzz.sh [--smoke | --seconds N] [target...]
#   --smoke   a short run of each target (CI); default is 60 s each.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
if [ "${1:-}" = --smoke ]; then seconds=${HIVEMIND_FUZZ_SMOKE_SECONDS:-15}; shift; fi
if [ "${1:-}" = --seconds ]; then seconds=$2; shift 2; fi

export CCACHE_BASEDIR="$(pwd)"
cmake --preset fuzz -DHIVEMIND_WARNINGS_AS_ERRORS=ON >/dev/null
cmake --build --preset fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(find build-fuzz/bin -maxdepth 1 -name 'fuzz_*' -type f -executable -printf '%f\n' | sort)
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets are built yet"
  exit 0
fi
for t in "${targets[@]}"; do
  corpus=build-fuzz/corpus/$t
  mkdir -p "$corpus"
  seeds=tests/fuzz/seeds/${t#fuzz_}
  [ -d "$seeds" ] || seeds=""
  echo "fuzz: $t for ${seconds}s"
  build-fuzz/bin/$t -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
    "$corpus" $seeds 2>&1 | tail -n 12
done
