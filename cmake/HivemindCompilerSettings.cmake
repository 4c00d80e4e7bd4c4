# Warnings, sanitizers and compiler caching for every hivemind target.

find_program(HIVEMIND_CCACHE ccache)
if(HIVEMIND_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER ${HIVEMIND_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${HIVEMIND_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${HIVEMIND_CCACHE})
endif()

# Flags for our own targets only (not for third-party code pulled in through imported targets).
set(HIVEMIND_WARNING_FLAGS -Wall -Wextra -Wpedantic -Wno-unused-parameter)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  # GCC 12's middle-end warnings misfire on inlined libstdc++ code at -O2/-O3: -Wrestrict inside
  # std::string's operator+ (GCC bug 105329), -Warray-bounds and -Wstringop-overflow inside
  # std::vector::resize/insert of small trivially-copyable values (GCC bugs 106199, 107852). GCC 13
  # fixed them; keep them on there.
  list(APPEND HIVEMIND_WARNING_FLAGS -Wno-restrict -Wno-array-bounds -Wno-stringop-overflow)
endif()
if(HIVEMIND_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # Sanitizer instrumentation makes GCC's -Wmaybe-uninitialized misfire on std::variant moves (GCC
  # documents that sanitizers can cause false warnings); the release build keeps the warning.
  list(APPEND HIVEMIND_WARNING_FLAGS -Wno-maybe-uninitialized)
endif()
if(HIVEMIND_WARNINGS_AS_ERRORS)
  list(APPEND HIVEMIND_WARNING_FLAGS -Werror)
endif()

if(HIVEMIND_SANITIZE)
  string(REPLACE "," ";" _sanitizers "${HIVEMIND_SANITIZE}")
  set(_flags "")
  foreach(s IN LISTS _sanitizers)
    list(APPEND _flags "-fsanitize=${s}")
  endforeach()
  add_compile_options(${_flags} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(${_flags})
endif()

# Thread-rule checks (common/include/hivemind/common/thread_rule.h): methods documented "I/O thread
# only" or "not from the I/O thread" abort when called from the wrong thread. On in Debug and
# sanitizer builds (the asan preset defines NDEBUG, so this cannot key on it), off in release.
set(HIVEMIND_CHECK_THREADS AUTO CACHE STRING "Thread-rule checks: ON, OFF or AUTO (Debug and sanitizer builds)")
if(HIVEMIND_CHECK_THREADS STREQUAL "AUTO")
  if(CMAKE_BUILD_TYPE STREQUAL "Debug" OR HIVEMIND_SANITIZE)
    set(HIVEMIND_THREAD_CHECKS ON)
  else()
    set(HIVEMIND_THREAD_CHECKS OFF)
  endif()
else()
  set(HIVEMIND_THREAD_CHECKS ${HIVEMIND_CHECK_THREADS})
endif()
