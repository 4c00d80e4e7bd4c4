#!/usr/bin/env bash
# Installs missing dependencies, configures (once) and builds the release preset into build/.
# Usage: ./scripts/build.sh [extra cmake -D options]
# Environment: HIVEMIND_PRESET (default release), HIVEMIND_WERROR=1 to turn warnings into errors.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

# Paths relative to the checkout in ccache's keys, so a fresh clone elsewhere reuses earlier objects.
export CCACHE_BASEDIR="$(pwd)"

preset=${HIVEMIND_PRESET:-release}
# Only an explicit HIVEMIND_WERROR changes the cached setting: flipping it would recompile everything, so
# demo.sh after test.sh reuses test.sh's objects.
config=()
[ "${HIVEMIND_WERROR:-}" = 1 ] && config+=(-DHIVEMIND_WARNINGS_AS_ERRORS=ON)
[ "${HIVEMIND_WERROR:-}" = 0 ] && config+=(-DHIVEMIND_WARNINGS_AS_ERRORS=OFF)

echo "build: configuring preset '$preset'"
cmake --preset "$preset" "${config[@]}" "$@" >/dev/null
echo "build: compiling (first build of the LibTorch modules takes several minutes on 2 cores)"
cmake --build --preset "$preset"
