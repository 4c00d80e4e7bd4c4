#!/usr/bin/env bash
# Checks the Python package as a user installs it: `pip install --no-build-isolation .` from this
# checkout (into a scratch directory, nothing downloaded, Debian's setuptools), then, from outside
# the checkout, imports it and trains through a remote expert of an in-process server.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=$(sed -n 's/^HIVEMIND_PYTHON_EXECUTABLE:INTERNAL=//p' build/CMakeCache.txt 2>/dev/null || true)
if [ -z "$python" ]; then
  echo "check-python-install: the release build has no Python package; run scripts/build.sh" >&2
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# The wheel's CMake tree (static hivemind libraries) is kept between runs, next to the release build
# and at its depth (setup.py's default), so ccache serves its objects from the release build's.
export HIVEMIND_PY_BUILD_DIR="$root/build-python"
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
export CCACHE_BASEDIR="$root"
# Warnings are errors here as in the release build: the same flags, so ccache serves the wheel's
# objects from the release build's (and the package is held to the same standard).
export CMAKE_ARGS="-DHIVEMIND_WARNINGS_AS_ERRORS=ON${CMAKE_ARGS:+ $CMAKE_ARGS}"
"$python" -m pip install --quiet --no-build-isolation --no-deps --no-index --target "$scratch/site" "$root"
cd "$scratch"
PYTHONPATH="$scratch/site" HIVEMIND_SPIN_US=0 "$python" - <<'PY'
import os
import torch
import hivemind_cpp as hivemind

assert hivemind.__file__.startswith(os.getcwd()), hivemind.__file__  # the installed copy
with hivemind.Server.create(listen_on="tcp://127.0.0.1:0", expert_uids=["expert.0"], hidden_dim=32,
                            optim_cls=None, cpu_bind="none", start=True) as server:
    expert = hivemind.RemoteExpert("expert.0", server.endpoint)
    x = torch.randn(4, 32, requires_grad=True)
    expert(x).sum().backward()
    assert x.grad is not None and x.grad.shape == (4, 32)
print(f"check-python-install: hivemind_cpp {hivemind.__version__} installed by pip works")
PY
