# cmake -DPROGRAM=<path> -DEXPECTED=<line> -P check_version.cmake
# Runs `PROGRAM --version` and fails unless it exits 0 having printed exactly EXPECTED (one line) on
# stdout.
execute_process(COMMAND ${PROGRAM} --version RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 50)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} --version: exit status '${rc}', expected 0; stderr: ${err}")
endif()
if(NOT out STREQUAL "${EXPECTED}\n")
  message(FATAL_ERROR "${PROGRAM} --version printed '${out}', expected '${EXPECTED}' and a newline")
endif()
message(STATUS "${PROGRAM} --version: ${EXPECTED}")
