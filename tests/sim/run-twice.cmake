# run-twice.cmake: runs one chaotic simulation twice, in two processes, and
# fails unless both print the same trace hash (cmake -DSIM=path -P this).
set(args --seed 42 --nodes 9 --profile test --duration 30s --loss 0.05 --dup 0.02
    --reorder 0.1 --crash-rate 200 --slow 1 --partition 8s:15s:0.4)
foreach(run 1 2)
  execute_process(COMMAND ${SIM} ${args} OUTPUT_VARIABLE out${run} RESULT_VARIABLE rc${run})
  if(NOT rc${run} EQUAL 0)
    message(FATAL_ERROR "run ${run} exited with ${rc${run}}:\n${out${run}}")
  endif()
  string(REGEX MATCH "trace +([0-9a-f]+)" m "${out${run}}")
  if(NOT m)
    message(FATAL_ERROR "run ${run} printed no trace hash:\n${out${run}}")
  endif()
  set(trace${run} ${CMAKE_MATCH_1})
endforeach()
if(NOT trace1 STREQUAL trace2)
  message(FATAL_ERROR "same seed, different runs: trace ${trace1} then ${trace2}")
endif()
message(STATUS "trace ${trace1} twice")
