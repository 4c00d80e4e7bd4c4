#!/usr/bin/env bash
# Builds a UCX release from its source tarball into a cache folder outside the repository and prints
# the install prefix on stdout (everything else goes to stderr). Debian 12 ships UCX 1.13 only, while
# clusters run 1.14-1.18; this is how the project tests the newer generation on every CI run.
#
# Usage: scripts/ucx-from-source.sh [TARBALL]
#   TARBALL  a `git archive` of a UCX release tag (ucx-<version>.tar.xz, or .tar.gz/.tgz with configure
#            already generated, as gpu-stage.sh makes); default: $HIVEMIND_UCX_TARBALL,
#            else ../shared/ucx/ucx-*.tar.xz next to the checkout (the newest version there).
# Environment:
#   HIVEMIND_UCX_CACHE  where builds are kept (default ~/.cache/hivemind); the prefix is
#                       $HIVEMIND_UCX_CACHE/ucx-<version>[-cuda], reused when its stamp file is present.
#   CUDA_HOME           a CUDA toolkit to build the cuda transports against (default /usr/local/cuda);
#                       used only where a driver is present too (libcuda.so.1 loadable), since the
#                       transports need one at run time.
# Exit status: 0 built or reused (prefix printed), 3 no tarball found (nothing printed), 1 build failure.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

tarball=${1:-${HIVEMIND_UCX_TARBALL:-}}
if [ -z "$tarball" ]; then
  tarball=$(ls -1 "$root"/../shared/ucx/ucx-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
fi
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
  echo "ucx-from-source: no UCX source tarball (give one, or set HIVEMIND_UCX_TARBALL)" >&2
  exit 3
fi
name=$(basename "$tarball")
version=${name#ucx-}
version=${version%.tar.*}
version=${version%.tgz}
version=${version%-configured}
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  echo "ucx-from-source: cannot read a version from '$name' (expected ucx-X.Y.Z.tar.xz)" >&2
  exit 1
fi

cuda_home=${CUDA_HOME:-/usr/local/cuda}
cuda=()
suffix=""
# A CUDA-aware UCX needs the toolkit to build and the driver to run; without the driver the cuda
# transports only log errors, so they are left out.
if [ -x "$cuda_home/bin/nvcc" ] && ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1'; then
  cuda=(--with-cuda="$cuda_home")
  suffix=-cuda
fi

cache=${HIVEMIND_UCX_CACHE:-$HOME/.cache/hivemind}
prefix="$cache/ucx-$version$suffix"
stamp="$prefix/.hivemind-built-from"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$name${cuda[*]:+ ${cuda[*]}}" ]; then
  echo "ucx-from-source: reusing $prefix" >&2
  echo "$prefix"
  exit 0
fi

# A release tag's archive needs ./autogen.sh (autotools); an archive made by scripts/gpu-stage.sh already
# has its configure script, for hosts without autotools.
needs_autogen=1
tar -tf "$tarball" | grep -qE '^[^/]+/configure$' && needs_autogen=0
tools=(make)
[ "$needs_autogen" = 1 ] && tools+=(autoreconf automake libtoolize)
for tool in "${tools[@]}"; do
  if ! command -v "$tool" >/dev/null; then
    echo "ucx-from-source: '$tool' is missing (Debian: apt-get install autoconf automake libtool make)" >&2
    exit 1
  fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/ucx-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log="$work/build.log"
echo "ucx-from-source: building UCX $version$suffix into $prefix (log: $log while it runs)" >&2
started=$SECONDS
{
  tar -xf "$tarball" -C "$work"
  src=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  cd "$src"
  [ "$needs_autogen" = 0 ] || ./autogen.sh
  # Java and Go bindings off: Maven cannot reach its repositories here. Docs and examples are not needed.
  ./configure --prefix="$prefix" --disable-logging --disable-debug --disable-assertions \
    --disable-params-check --enable-mt --without-java --without-go --disable-doxygen-doc \
    --without-rdmacm --without-verbs --without-knem --without-xpmem ${cuda[@]+"${cuda[@]}"}
  make -j"$(nproc)"
  make install DESTDIR="$work/stage"
} >"$log" 2>&1 || {
  echo "ucx-from-source: the build failed; the end of its log:" >&2
  tail -n 30 "$log" >&2
  exit 1
}
# Staged with DESTDIR and moved into place (the paths compiled in, such as the module directory, are
# the final prefix's), so an interrupted build never leaves a prefix that looks complete.
rm -rf "$prefix"
mkdir -p "$(dirname "$prefix")"
mv "$work/stage$prefix" "$prefix"
echo "$name${cuda[*]:+ ${cuda[*]}}" >"$stamp"
echo "ucx-from-source: built UCX $version$suffix in $((SECONDS - started)) s" >&2
echo "$prefix"
