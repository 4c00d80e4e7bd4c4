# The Python package's build dependencies: an interpreter that imports torch (Debian's python3-torch
# or a pip-installed PyTorch), its libtorch_python, and pybind11 (Debian's pybind11-dev, else the
# copy PyTorch ships in its include directory). Sets HIVEMIND_HAVE_PYTHON.
#
# The interpreter: HIVEMIND_PYTHON when given, else the first of `python3` on PATH and
# /usr/bin/python3 that can import torch, so a pyenv or venv python without torch does not hide the
# system's.
set(HIVEMIND_HAVE_PYTHON OFF)
if(HIVEMIND_WITH_PYTHON STREQUAL "OFF" OR NOT HIVEMIND_HAVE_TORCH)
  if(HIVEMIND_WITH_PYTHON STREQUAL "ON")
    message(FATAL_ERROR "HIVEMIND_WITH_PYTHON=ON needs HIVEMIND_WITH_TORCH=ON")
  endif()
  return()
endif()

function(_hivemind_fail_or_skip reason)
  if(HIVEMIND_WITH_PYTHON STREQUAL "ON")
    message(FATAL_ERROR "HIVEMIND_WITH_PYTHON=ON: ${reason}")
  endif()
  message(STATUS "Python package not built: ${reason}")
endfunction()

set(HIVEMIND_PYTHON "" CACHE FILEPATH "Python interpreter for the hivemind_cpp package (must import torch)")
set(_candidates ${HIVEMIND_PYTHON})
if(NOT HIVEMIND_PYTHON)
  find_program(_path_python3 NAMES python3 NO_CACHE)
  set(_candidates ${_path_python3} /usr/bin/python3)
endif()
set(_python "")
foreach(candidate IN LISTS _candidates)
  if(NOT candidate OR NOT EXISTS "${candidate}")
    continue()
  endif()
  execute_process(
    COMMAND "${candidate}" -c "import os, sys, torch; print(os.path.realpath(sys.executable)); print(os.path.dirname(torch.__file__)); print(torch.__version__)"
    OUTPUT_VARIABLE _out ERROR_QUIET RESULT_VARIABLE _rc OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(_rc EQUAL 0)
    string(REPLACE "\n" ";" _out "${_out}")
    list(GET _out 0 _python)
    list(GET _out 1 HIVEMIND_TORCH_PYTHON_DIR)
    list(GET _out 2 _torch_version)
    break()
  endif()
endforeach()
if(NOT _python)
  _hivemind_fail_or_skip("no python3 that imports torch (install python3-torch, or set HIVEMIND_PYTHON)")
  return()
endif()

set(Python3_EXECUTABLE "${_python}")
find_package(Python3 COMPONENTS Interpreter Development.Module QUIET)
if(NOT Python3_Development.Module_FOUND)
  _hivemind_fail_or_skip("${_python} has no development headers (install python3-dev)")
  return()
endif()

find_library(HIVEMIND_TORCH_PYTHON_LIBRARY torch_python PATHS "${HIVEMIND_TORCH_PYTHON_DIR}/lib" NO_DEFAULT_PATH)
if(NOT HIVEMIND_TORCH_PYTHON_LIBRARY)
  _hivemind_fail_or_skip("libtorch_python not found under ${HIVEMIND_TORCH_PYTHON_DIR}/lib")
  return()
endif()

find_package(pybind11 CONFIG QUIET)
if(pybind11_FOUND)
  set(HIVEMIND_PYBIND11_TARGET pybind11::headers)
elseif(EXISTS "${HIVEMIND_TORCH_PYTHON_DIR}/include/pybind11/pybind11.h")
  set(HIVEMIND_PYBIND11_TARGET "")
  set(HIVEMIND_PYBIND11_INCLUDE "${HIVEMIND_TORCH_PYTHON_DIR}/include")
else()
  _hivemind_fail_or_skip("pybind11 not found (install pybind11-dev)")
  return()
endif()

set(HIVEMIND_HAVE_PYTHON ON)
# For scripts/test-python.sh: the interpreter the package was built for.
set(HIVEMIND_PYTHON_EXECUTABLE "${_python}" CACHE INTERNAL "")
message(STATUS "Python package: ${_python} (Python ${Python3_VERSION}), torch ${_torch_version} at ${HIVEMIND_TORCH_PYTHON_DIR}")
