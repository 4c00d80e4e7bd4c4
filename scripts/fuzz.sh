#!/usr/bin/env bash
# Builds the libFuzzer targets of every network decoder with clang (preset 'fuzz') and runs them.
# Usage: ./scripts/fuzz.sh [--smoke | --seconds N] [--build-dir DIR] [target...]
#   --smoke          a short run of each target (CI); default is 60 s each
#   --build-dir DIR  run the fuzzers already built in DIR/bin (test.sh uses the 'asan' preset's, which
#                    builds them next to the sanitized tests) instead of building the 'fuzz' preset
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
build_dir=""
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) seconds=${HIVEMIND_FUZZ_SMOKE_SECONDS:-10}; shift ;;
    --seconds) seconds=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    *) break ;;
  esac
done

if [ -z "$build_dir" ]; then
  export CCACHE_BASEDIR="$(pwd)"
  cmake --preset fuzz -DHIVEMIND_WARNINGS_AS_ERRORS=ON >/dev/null
  cmake --build --preset fuzz
  build_dir=build-fuzz
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(find "$build_dir/bin" -maxdepth 1 -name 'fuzz_*' -type f -executable -printf '%f\n' | sort)
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets in $build_dir/bin (configure with HIVEMIND_BUILD_FUZZERS=ON, clang)" >&2
  exit 1
fi
for t in "${targets[@]}"; do
  corpus=$build_dir/corpus/$t
  mkdir -p "$corpus"
  seeds=tests/fuzz/seeds/${t#fuzz_}
  [ -d "$seeds" ] || seeds=""
  echo "fuzz: $t for ${seconds}s"
  "$build_dir/bin/$t" -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 \
    "$corpus" $seeds 2>&1 | tail -n 12
done
