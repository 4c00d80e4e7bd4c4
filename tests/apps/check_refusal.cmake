# cmake -DPROGRAM=<path> -DARGS=<a|b|c> -DEXPECTED_CODE=<n> -DEXPECTED=<text> -P check_refusal.cmake
# Runs PROGRAM with ARGS ('|'-separated, so that arguments may hold ';') and fails unless it exits
# with EXPECTED_CODE having printed EXPECTED somewhere in its output: a bad value must be refused at
# start, naming what was wrong.
string(REPLACE "|" ";" _args "${ARGS}")
execute_process(COMMAND ${PROGRAM} ${_args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                TIMEOUT 50)
if(NOT rc EQUAL EXPECTED_CODE)
  message(FATAL_ERROR "${PROGRAM} ${ARGS}: exit status '${rc}', expected ${EXPECTED_CODE}; "
                      "output: ${out}${err}")
endif()
string(FIND "${out}${err}" "${EXPECTED}" _at)
if(_at EQUAL -1)
  message(FATAL_ERROR "${PROGRAM} ${ARGS}: no '${EXPECTED}' in its output: ${out}${err}")
endif()
message(STATUS "${PROGRAM} refused ${ARGS} with exit status ${rc}")
