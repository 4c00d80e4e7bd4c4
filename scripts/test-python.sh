#!/usr/bin/env bash
# Runs the hivemind_cpp pytest suites (python/tests) against the package in a build tree, with the
# interpreter the package was built for. Prints pytest's summary; exits with pytest's status.
#   scripts/test-python.sh [--build-dir DIR] [pytest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=build
if [ "${1:-}" = "--build-dir" ]; then
  build_dir=$2
  shift 2
fi
python=$(sed -n 's/^HIVEMIND_PYTHON_EXECUTABLE:INTERNAL=//p' "$build_dir/CMakeCache.txt" 2>/dev/null || true)
if [ -z "$python" ] || ! ls "$build_dir"/python/hivemind_cpp/_C*.so >/dev/null 2>&1; then
  echo "test-python: $build_dir has no Python package (configure found no python3-torch/pybind11?)" >&2
  exit 1
fi
export PYTHONPATH="$PWD/$build_dir/python${PYTHONPATH:+:$PYTHONPATH}"
export HIVEMIND_BUILD_DIR="$PWD/$build_dir"
export HIVEMIND_SPIN_US=0  # two shared cores: no busy polling
# -p no:cacheprovider: no .pytest_cache in the checkout; -rs: every skip prints its reason.
exec "$python" -m pytest -p no:cacheprovider -q -rs python/tests "$@"
