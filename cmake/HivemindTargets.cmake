# Helpers that give every module, program and test the same shape.

# hivemind_add_library(<module> SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# Creates target hivemind_<module> with the alias hivemind::<module>, public headers from
# <module>/include, private sources and headers from <module>/src, installed and exported.
function(hivemind_add_library module)
  cmake_parse_arguments(ARG "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(target hivemind_${module})
  add_library(${target} ${ARG_SOURCES})
  add_library(hivemind::${module} ALIAS ${target})
  # DEFINE_SYMBOL "": no -Dhivemind_<module>_EXPORTS (nothing reads it; symbols are exported by
  # default), so a shared and a static build compile with identical commands and ccache serves the
  # static one that `pip install .` makes (setup.py) from the release build's objects.
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${module} OUTPUT_NAME hivemind_${module}
                                             VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
                                             DEFINE_SYMBOL "")
  target_include_directories(${target}
    PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${HIVEMIND_WARNING_FLAGS}>)
  install(TARGETS ${target} EXPORT hivemindTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
          RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  set_property(GLOBAL APPEND PROPERTY HIVEMIND_MODULES ${module})
endfunction()

# hivemind_add_program(<name> SOURCES ... [LIBS ...] [NO_INSTALL])
# A command-line program; lands in build/bin/ and is installed to bin/.
function(hivemind_add_program name)
  cmake_parse_arguments(ARG "NO_INSTALL" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${HIVEMIND_WARNING_FLAGS}>)
  if(NOT ARG_NO_INSTALL)
    install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
endfunction()

# hivemind_test_optimization(<target>)
# Test code is compiled at -O1 in Release builds (it comes after -O3 on the command line, so it wins): the
# code under test lives in the libraries, which keep the build type's level; test bodies only drive it,
# and GoogleTest-heavy sources compile 25-40% faster at -O1, which keeps CI inside its time budget.
function(hivemind_test_optimization target)
  target_compile_options(${target} PRIVATE $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CONFIG:Release>>:-O1>)
endfunction()

# The environment every test runs in. Under ThreadSanitizer, UCX's memory hooks (UCM) are off: glibc
# calls madvise on a thread's stack as the thread exits, after TSan has torn down that thread's state,
# and UCM's madvise hook takes a rwlock there, which TSan's interceptor turns into a segfault.
# (ENVIRONMENT_MODIFICATION, one entry each: gtest_discover_tests splits a list-valued property.)
set(HIVEMIND_TEST_PROPERTIES ENVIRONMENT "HIVEMIND_BUILD_DIR=${PROJECT_BINARY_DIR}")
if(HIVEMIND_SANITIZE MATCHES "thread")
  list(APPEND HIVEMIND_TEST_PROPERTIES ENVIRONMENT_MODIFICATION "UCX_MEM_EVENTS=set:no")
endif()

# hivemind_add_test(<name> SOURCES ... [LIBS ...] [LABELS ...] [TIMEOUT seconds])
# A GoogleTest binary in build/tests/; each TEST becomes its own CTest case carrying LABELS
# (unit, integration, multinode, slurm, gpu).
function(hivemind_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} hivemind_test_support)
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${HIVEMIND_WARNING_FLAGS}>)
  hivemind_test_optimization(${name})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
               ${HIVEMIND_TEST_PROPERTIES})
endfunction()

# hivemind_add_fuzzer(<name> SOURCES ... [LIBS ...] [SEEDS dir])
# A libFuzzer target (LLVMFuzzerTestOneInput). With HIVEMIND_BUILD_FUZZERS (clang: the 'fuzz' and
# 'asan' presets) it is a real fuzzer in <build>/bin/fuzz_<name>; in every other build it is compiled
# with a replay main. Either way, when tests are built CTest runs it over its seed inputs, so the target
# never rots and its seeds stay regression tests.
function(hivemind_add_fuzzer name)
  cmake_parse_arguments(ARG "" "SEEDS" "SOURCES;LIBS" ${ARGN})
  set(target fuzz_${name})
  set(_seeds ${PROJECT_SOURCE_DIR}/tests/fuzz/seeds/${name})
  if(HIVEMIND_BUILD_FUZZERS)
    add_executable(${target} ${ARG_SOURCES})
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${target} PRIVATE -fsanitize=fuzzer,address,undefined)
    if(HIVEMIND_BUILD_TESTS)
      # -runs=0: execute every seed once, then stop.
      add_test(NAME fuzz_replay.${name} COMMAND ${target} -runs=0 ${_seeds})
      set_tests_properties(fuzz_replay.${name} PROPERTIES LABELS unit TIMEOUT 120)
    endif()
  elseif(HIVEMIND_BUILD_TESTS)
    add_executable(${target} ${ARG_SOURCES} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
    set_target_properties(${target} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
    add_test(NAME fuzz_replay.${name} COMMAND ${target} ${_seeds})
    set_tests_properties(fuzz_replay.${name} PROPERTIES LABELS unit TIMEOUT 120)
  else()
    return()
  endif()
  target_link_libraries(${target} PRIVATE ${ARG_LIBS})
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${HIVEMIND_WARNING_FLAGS}>)
endfunction()
