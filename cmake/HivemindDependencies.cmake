# Finds every dependency once. Each sets HIVEMIND_HAVE_<X> so modules can choose features.
# All of them come from Debian 12 packages (scripts/install-deps.sh); on a GPU host LibTorch comes from
# CMAKE_PREFIX_PATH (python3 -c 'import torch;print(torch.utils.cmake_prefix_path)').

find_package(Threads REQUIRED)
find_package(spdlog REQUIRED)
find_package(fmt REQUIRED)
find_package(CLI11 REQUIRED)
# Metrics exposition and the /metrics endpoint (core: Collectable, TextSerializer; pull: Exposer).
find_package(prometheus-cpp CONFIG REQUIRED)
# hivemind-bench --json; the TorchScript expert's hivemind_expert.json (runtime).
find_package(nlohmann_json 3 REQUIRED)
find_package(PkgConfig REQUIRED)

# ---- UCX (pkg-config) ----
set(HIVEMIND_HAVE_UCX OFF)
if(NOT HIVEMIND_WITH_UCX STREQUAL "OFF")
  if(HIVEMIND_WITH_UCX STREQUAL "ON")
    pkg_check_modules(UCX REQUIRED IMPORTED_TARGET ucx)
  else()
    pkg_check_modules(UCX QUIET IMPORTED_TARGET ucx)
  endif()
  if(UCX_FOUND)
    set(HIVEMIND_HAVE_UCX ON)
  else()
    message(STATUS "UCX not found: the transport builds with its TCP backend only")
  endif()
endif()

# ---- hwloc (pkg-config) ----
pkg_check_modules(HWLOC IMPORTED_TARGET hwloc)
set(HIVEMIND_HAVE_HWLOC ${HWLOC_FOUND})

# ---- CUDA (auto-detected; nvcc compiles here even where no GPU runs) ----
set(HIVEMIND_HAVE_CUDA OFF)
if(NOT HIVEMIND_WITH_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT DEFINED CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      # Hopper (H100/H200) and Ampere; override with -DCMAKE_CUDA_ARCHITECTURES=native on a GPU host.
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    enable_language(CUDA)
    # CMake < 3.26 knows no C++20 dialect flag for nvcc, so CMAKE_CUDA_STANDARD 20 fails at generate
    # time ("CUDA20 ... does not know the flags"); nvcc 12+ accepts -std=c++20.
    if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(HIVEMIND_HAVE_CUDA ON)
  elseif(HIVEMIND_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "HIVEMIND_WITH_CUDA=ON but no CUDA compiler was found")
  else()
    message(STATUS "CUDA compiler not found: building CPU-only")
  endif()
endif()

# ---- LibTorch ----
set(HIVEMIND_HAVE_TORCH OFF)
if(HIVEMIND_WITH_TORCH)
  find_package(Torch REQUIRED)
  set(HIVEMIND_HAVE_TORCH ON)
endif()

# ---- GoogleTest ----
if(HIVEMIND_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
