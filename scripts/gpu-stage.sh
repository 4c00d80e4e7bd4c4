#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) on a Debian 12 build machine for scripts/gpu-check.sh on a lent GPU host,
# which can download nothing and lacks some of our build dependencies:
#   .gpu/ucx-*.tgz  the CUDA-aware UCX built for that host (copied from the gpu-host folder given, default ../shared/gpu-host/);
#   .gpu/ucx-<version>-configured.tgz  the UCX release source of ../shared/ucx with configure generated,
#                   which gpu-check.sh builds CUDA-aware on the host (scripts/ucx-from-source.sh);
#   .gpu/deps.tgz   Debian's spdlog, fmt, CLI11, nlohmann-json, OpenSSL and prometheus-cpp development
#                   files (with what prometheus-cpp's CMake package looks for: civetweb, zlib, curl)
#                   and their shared libraries, used there only as a fallback behind the host's own
#                   packages.
# Nothing here is committed; pass `carry: [".gpu"]` to the device tool.
#
# Usage: scripts/gpu-stage.sh [gpu-host-dir]   (default ../shared/gpu-host)
set -euo pipefail
cd "$(dirname "$0")/.."

host_dir=${1:-../shared/gpu-host}
mkdir -p .gpu
if ls "$host_dir"/ucx-*.tgz >/dev/null 2>&1; then
  cp "$host_dir"/ucx-*.tgz .gpu/
else
  echo "gpu-stage: no ucx-*.tgz in $host_dir; gpu-check will build with the host's UCX, if any" >&2
fi

./scripts/install-deps.sh >/dev/null

# The UCX release source (../shared/ucx), with its configure script generated here: the GPU host has no
# autotools, and scripts/gpu-check.sh builds a CUDA-aware UCX of that generation from it.
ucx_tarball=$(ls -1 ../shared/ucx/ucx-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$ucx_tarball" ]; then
  ucx_name=$(basename "$ucx_tarball" .tar.xz)
  ucx_work=$(mktemp -d)
  tar -xf "$ucx_tarball" -C "$ucx_work"
  ucx_src=$(find "$ucx_work" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  (cd "$ucx_src" && ./autogen.sh >/dev/null 2>&1) || { echo "gpu-stage: autogen.sh of $ucx_tarball failed" >&2; exit 1; }
  tar -czf ".gpu/$ucx_name-configured.tgz" -C "$ucx_work" "$(basename "$ucx_src")"
  rm -rf "$ucx_work"
else
  echo "gpu-stage: no ../shared/ucx/ucx-*.tar.xz; gpu-check will not build a newer UCX" >&2
fi
# The development packages, and the packages holding the shared libraries they link to (zlib's
# runtime is on every host, and dpkg knows it only under /lib, so it is not looked up).
packages=(libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev libssl-dev
          prometheus-cpp-dev libcivetweb-dev zlib1g-dev libcurl4-openssl-dev)
for lib in libspdlog.so libfmt.so libcrypto.so libssl.so libprometheus-cpp-core.so \
           libprometheus-cpp-pull.so libprometheus-cpp-push.so libcivetweb.so libcivetweb-cpp.so \
           libcurl.so; do
  real=$(readlink -f "/usr/lib/x86_64-linux-gnu/$lib")
  packages+=("$(dpkg -S "$real" | cut -d: -f1 | head -n 1)")
done

mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
for pkg in "${packages[@]}"; do
  dpkg -L "$pkg" | while read -r path; do
    case "$path" in /usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/*) continue ;; esac
    if [ -f "$path" ] || [ -L "$path" ]; then (cd / && cp -a --parents "${path#/}" "$staging/"); fi
  done
done
tar -czf .gpu/deps.tgz -C "$staging" usr
echo "gpu-stage: .gpu/ holds $(ls .gpu | tr '\n' ' ')($(du -sh .gpu | cut -f1)); packages: ${packages[*]}"
