#!/usr/bin/env bash
# Installs missing dependencies, configures (once) and builds the release preset into build/.
# Usage: ./scripts/build.sh [extra cmake -D options]
# Environment: HIVEMIND_PRESET (default release), HIVEMIND_WERROR=0 to stop treating warnings as errors
# (on by default), HIVEMIND_WERROR=1 to turn it back on in an existing tree.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh

# Paths relative to the checkout in ccache's keys, so a fresh clone elsewhere reuses earlier objects.
export CCACHE_BASEDIR="$(pwd)"

preset=${HIVEMIND_PRESET:-release}
# Warnings are errors in every build these scripts make, so that demo.sh and test.sh configure build/ the
# same way and whichever runs second reuses the other's objects (a flipped flag would recompile all ~230
# targets). Debian 12's compilers build the tree without a warning, and CI keeps it so. On another
# toolchain, HIVEMIND_WERROR=0 turns it off; only an explicit HIVEMIND_WERROR changes an existing tree's
# setting.
config=()
binary_dir=build
[ "$preset" = release ] || binary_dir=build-$preset
werror=${HIVEMIND_WERROR:-}
[ -z "$werror" ] && [ ! -f "$binary_dir/CMakeCache.txt" ] && werror=1
[ "$werror" = 1 ] && config+=(-DHIVEMIND_WARNINGS_AS_ERRORS=ON)
[ "$werror" = 0 ] && config+=(-DHIVEMIND_WARNINGS_AS_ERRORS=OFF)

echo "build: configuring preset '$preset'"
cmake --preset "$preset" "${config[@]}" "$@" >/dev/null
echo "build: compiling (first build of the LibTorch modules takes several minutes on 2 cores)"
cmake --build --preset "$preset"
