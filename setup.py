"""pip install --no-build-isolation .  — builds the hivemind_cpp Python package with CMake.

Nothing is downloaded: the build uses the setuptools, torch and pybind11 already installed (Debian's
python3-setuptools, python3-torch and pybind11-dev, or a pip-installed PyTorch 2.x, whose LibTorch
CMake package and bundled pybind11 are used). The hivemind libraries are linked statically into the
extension, so the installed package needs no other file of this project. See docs/python.md.

Environment: HIVEMIND_PY_BUILD_DIR (default build-python/) keeps the CMake build between
installs; CMAKE_ARGS adds CMake arguments (e.g. -DCMAKE_PREFIX_PATH=... for another LibTorch).
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def project_version() -> str:
    for line in (ROOT / "CMakeLists.txt").read_text().splitlines():
        if line.startswith("project(hivemind VERSION "):
            return line.split()[2]
    raise RuntimeError("no version in CMakeLists.txt")


def _staging_dir() -> str:
    path = ROOT / "build" / "python-setuptools"
    path.mkdir(parents=True, exist_ok=True)
    return str(path.relative_to(ROOT))


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        # A sibling of build/, at the same depth: with ccache's base_dir the compile commands are
        # then the release build's to the letter, and its objects are reused.
        build_dir = Path(os.environ.get("HIVEMIND_PY_BUILD_DIR", ROOT / "build-python"))
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), *generator,
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF",  # one self-contained extension module
            "-DHIVEMIND_WITH_PYTHON=ON",
            f"-DHIVEMIND_PYTHON={sys.executable}",
            "-DHIVEMIND_BUILD_TESTS=OFF",
            "-DHIVEMIND_BUILD_BENCH=OFF",
            *shlex.split(os.environ.get("CMAKE_ARGS", "")),
        ]
        if shutil.which("ccache"):
            configure.append("-DCMAKE_CXX_COMPILER_LAUNCHER=ccache")
        subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", str(build_dir), "--target", "hivemind_python",
                        "--parallel", jobs], check=True)
        built = sorted((build_dir / "python" / "hivemind_cpp").glob("_C*.so"))
        if not built:
            raise RuntimeError(f"the CMake build left no _C*.so in {build_dir}/python/hivemind_cpp")
        target = Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built[-1], target)


setup(
    name="hivemind_cpp",
    version=project_version(),
    description="Decentralized mixture-of-experts training (hivemind's API) on a C++ engine",
    license="MIT",
    packages=["hivemind_cpp"],
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("hivemind_cpp._C")],
    cmdclass={"build_ext": CMakeBuild},
    # setuptools' own staging (and its egg-info) stays out of the sources and of the CMake build
    # tree's top level.
    options={"build": {"build_base": "build/python-setuptools"},
             "egg_info": {"egg_base": _staging_dir()}},
    python_requires=">=3.9",
    zip_safe=False,
)
