#!/usr/bin/env bash
# Installs every build, test and run dependency of hivemind-cpp from Debian 12 packages.
# Idempotent: when everything is present it only runs dpkg queries and exits in well under a second.
# Nothing is downloaded from anywhere but the distribution's apt repositories.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache clang libfuzzer-14-dev git
  # transport, pinning
  libucx-dev ucx-utils libhwloc-dev hwloc
  # LibTorch and a fast BLAS: without libopenblas0-pthread Debian's LibTorch runs on reference BLAS (~50x slower)
  libtorch-dev libopenblas0-pthread
  # the Python package (python/): Debian's PyTorch (the same 1.13 build as libtorch-dev), pybind11, pytest;
  # setuptools, wheel and pip for `pip install --no-build-isolation .`
  python3-dev python3-torch pybind11-dev python3-pytest python3-setuptools python3-wheel python3-pip python3-venv
  # libraries
  libgtest-dev libgmock-dev libspdlog-dev libfmt-dev libcli11-dev libssl-dev nlohmann-json3-dev
  prometheus-cpp-dev
  # launchers and cluster tooling used by the multi-node tests
  openmpi-bin libopenmpi-dev slurm-wlm slurm-client
  # networking tools for namespace tests and the metrics check
  iproute2 curl procps
  # building UCX from its source tarball (scripts/ucx-from-source.sh, the UCX 1.14+ test stage)
  autoconf automake libtool
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# slurm-wlm starts its daemons on install where systemd runs; policy-rc.d keeps them off, tests start their own.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
