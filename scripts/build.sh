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
werror=OFF
[ "${HIVEMIND_WERROR:-0}" = 1 ] && werror=ON

echo "build: configuring preset '$preset' (warnings as errors: $werror)"
cmake --preset "$preset" -DHIVEMIND_WARNINGS_AS_ERRORS=$werror "$@" >/dev/null
echo "build: compiling (first build of the LibTorch modules takes several minutes on 2 cores)"
cmake --build --preset "$preset"
