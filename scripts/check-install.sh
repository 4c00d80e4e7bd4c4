#!/usr/bin/env bash
# Installs the release build into a temporary prefix and builds examples/consumer against it twice:
# through find_package(hivemind) and through pkg-config. Proves the exported package works for a
# trainer that links hivemind directly.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
prefix=$(mktemp -d /tmp/hivemind-install.XXXXXX)
work=$(mktemp -d /tmp/hivemind-consumer.XXXXXX)
trap 'rm -rf "$prefix" "$work"' EXIT

cmake --install build --prefix "$prefix" >/dev/null
echo "check-install: installed into $prefix"
# The tests' and benchmarks' harness (ChildProcess) stays out of the package.
if [ -e "$prefix/include/hivemind/harness" ] || compgen -G "$prefix/lib*/libhivemind_harness*" >/dev/null; then
  echo "check-install: the test harness (include/hivemind/harness, libhivemind_harness) was installed" >&2
  exit 1
fi

torch_dir=$(grep -E "^Torch_DIR:" build/CMakeCache.txt | cut -d= -f2)
cmake -S examples/consumer -B "$work/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DTorch_DIR="$torch_dir" >/dev/null
cmake --build "$work/cmake" >/dev/null
"$work/cmake/hivemind_consumer"

PKG_CONFIG_PATH="$prefix/lib/pkgconfig" c++ -std=c++20 examples/consumer/pkgconfig_main.cc \
  -o "$work/pkgconfig_consumer" $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs hivemind)
"$work/pkgconfig_consumer"
echo "check-install: consumer project built and ran against the installed package"
