#!/usr/bin/env bash
# Runs the transport, DHT and client suites against a UCX built from source (scripts/ucx-from-source.sh),
# in their own build tree (build-ucx-source/), so that both UCX generations are tested: Debian 12's 1.13
# in the release tree, and the 1.14+ generation clusters run (shared memory with peer-failure handling)
# here. test.sh runs it as a stage.
#
# Usage: scripts/test-ucx-source.sh [TARBALL]   (see ucx-from-source.sh for where the tarball is looked for)
# Where no tarball exists the stage says so and exits 0; HIVEMIND_TEST_UCX_SOURCE=0 skips it outright.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export CCACHE_BASEDIR="$root"

if [ "${HIVEMIND_TEST_UCX_SOURCE:-1}" = 0 ]; then
  echo "test-ucx-source: skipped (HIVEMIND_TEST_UCX_SOURCE=0)"
  exit 0
fi
set +e
prefix=$(./scripts/ucx-from-source.sh "$@")
rc=$?
set -e
if [ "$rc" -eq 3 ]; then
  echo "test-ucx-source: skipped: no UCX source tarball here (see scripts/ucx-from-source.sh)"
  exit 0
fi
[ "$rc" -eq 0 ] || exit "$rc"
version=$("$prefix/bin/ucx_info" -v | sed -n 's/^# Library version: //p')
echo "test-ucx-source: UCX $version from $prefix"

# The tree is configured against that prefix only: a cached UCX from another prefix is dropped.
if [ -f build-ucx-source/CMakeCache.txt ] && ! grep -q "$prefix" build-ucx-source/CMakeCache.txt; then
  rm -rf build-ucx-source
fi
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cmake --preset ucx-source -DHIVEMIND_WARNINGS_AS_ERRORS=ON >/dev/null
# The preset builds the transport, DHT and client suites only (HIVEMIND_TEST_MODULES): every object that
# does not include UCX's headers is a ccache hit from the release tree.
cmake --build build-ucx-source --target tests/all

# The suites must really run on that UCX, not on Debian's.
linked=$(ldd build-ucx-source/tests/transport_rpc_test | sed -n 's/.*libucp\.so[^ ]* => \([^ ]*\).*/\1/p')
case "$linked" in
  "$prefix"/*) echo "test-ucx-source: transport_rpc_test loads $linked" ;;
  *)
    echo "test-ucx-source: transport_rpc_test loads libucp from '$linked', not from $prefix" >&2
    exit 1
    ;;
esac
ctest --test-dir build-ucx-source -j "$(nproc)" --output-on-failure --no-tests=error
