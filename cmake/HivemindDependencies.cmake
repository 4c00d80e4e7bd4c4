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

# ---- NCCL (the averaging module's GPU backend) ----
# Looked for under NCCL_ROOT (CMake variable or environment), then next to the CUDA toolkit (NVIDIA's
# packages put nccl.h and libnccl.so in the toolkit's include/ and lib64/), then in the system paths.
# 2.14 is the oldest release with nonblocking communicators (ncclCommInitRankConfig,
# config.blocking = 0), without which a member that never shows up would block the round forever.
set(HIVEMIND_HAVE_NCCL OFF)
set(HIVEMIND_NCCL_SUMMARY OFF)
set(_hivemind_nccl_min_version 2.14.0)
if(NOT HIVEMIND_WITH_NCCL MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "HIVEMIND_WITH_NCCL is '${HIVEMIND_WITH_NCCL}'; it takes AUTO, ON or OFF")
endif()
if(NOT HIVEMIND_WITH_NCCL STREQUAL "OFF")
  set(_nccl_missing "")
  if(NOT HIVEMIND_HAVE_CUDA)
    set(_nccl_missing "CUDA is not enabled (HIVEMIND_WITH_CUDA or no nvcc found)")
  else()
    set(_nccl_hints ${NCCL_ROOT} $ENV{NCCL_ROOT} ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR})
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${_nccl_hints} ${CUDAToolkit_INCLUDE_DIRS}
              PATH_SUFFIXES include)
    find_library(NCCL_LIBRARY NAMES nccl HINTS ${_nccl_hints} ${CUDAToolkit_LIBRARY_DIR}
                 PATH_SUFFIXES lib64 lib)
    if(NOT NCCL_INCLUDE_DIR OR NOT NCCL_LIBRARY)
      set(_nccl_missing "nccl.h or libnccl not found (set NCCL_ROOT to the NCCL installation)")
    else()
      file(STRINGS ${NCCL_INCLUDE_DIR}/nccl.h _nccl_version_lines REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) ")
      foreach(_part MAJOR MINOR PATCH)
        string(REGEX REPLACE ".*NCCL_${_part} ([0-9]+).*" "\\1" _nccl_${_part} "${_nccl_version_lines}")
      endforeach()
      set(NCCL_VERSION "${_nccl_MAJOR}.${_nccl_MINOR}.${_nccl_PATCH}")
      if(NCCL_VERSION VERSION_LESS _hivemind_nccl_min_version)
        set(_nccl_missing "NCCL ${NCCL_VERSION} at ${NCCL_INCLUDE_DIR} is older than ${_hivemind_nccl_min_version} (no nonblocking communicators)")
      endif()
    endif()
  endif()
  if(_nccl_missing STREQUAL "")
    add_library(NCCL::nccl UNKNOWN IMPORTED GLOBAL)
    set_target_properties(NCCL::nccl PROPERTIES IMPORTED_LOCATION ${NCCL_LIBRARY}
                                                INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
    set(HIVEMIND_HAVE_NCCL ON)
    set(HIVEMIND_NCCL_SUMMARY "ON(${NCCL_VERSION})")
    message(STATUS "NCCL ${NCCL_VERSION}: ${NCCL_LIBRARY}")
  elseif(HIVEMIND_WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR "HIVEMIND_WITH_NCCL=ON but NCCL cannot be used: ${_nccl_missing}. "
                        "Set NCCL_ROOT, or -DHIVEMIND_WITH_NCCL=AUTO to build the transport averaging backend only.")
  else()
    message(STATUS "NCCL not used (${_nccl_missing}): averaging builds with its transport backend only")
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
