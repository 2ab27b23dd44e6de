# The probmoe command: routing the worked example of ROUTING.md section 5 gives its
# weights and marginals; bad input fails with a clear message and a non-zero exit code.
set(work ${CMAKE_CURRENT_BINARY_DIR}/cli_test)
file(MAKE_DIRECTORY ${work})
file(WRITE ${work}/example.txt "1.3862944 0.4054651 -0.4054651 -1.3862944\n")
file(WRITE ${work}/ragged.txt "1 2 3\n1 2\n")

function(expect_output description expected_rc pattern)
  execute_process(COMMAND ${PROBMOE} ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL ${expected_rc})
    message(FATAL_ERROR "${description}: exit code ${rc}, expected ${expected_rc}\n${out}${err}")
  endif()
  if(NOT "${out}${err}" MATCHES "${pattern}")
    message(FATAL_ERROR "${description}: output lacks '${pattern}'\n${out}${err}")
  endif()
endfunction()

expect_output("version" 0 "probmoe 0\\.1" version)
expect_output("worked example" 0 "token 0: 0:0\\.623377 1:0\\.233766"
              route --router probmoe --k 2 ${work}/example.txt)
expect_output("worked example marginals" 0 "P\\(in S\\): 0\\.8625 0\\.6580 0\\.3420 0\\.1375"
              route --router probmoe --k 2 --marginals ${work}/example.txt)
expect_output("normalised top-k" 0 "token 0: 0:0\\.727273 1:0\\.272727"
              route --router topk --k 2 --norm ${work}/example.txt)
expect_output("unknown router" 2 "unknown router 'top3'" route --router top3 ${work}/example.txt)
expect_output("k above E" 1 "k = 9" route --router topk --k 9 ${work}/example.txt)
expect_output("ragged rows" 1 "line 2 has 2 logits" route ${work}/ragged.txt)
expect_output("missing file" 1 "cannot open" route ${work}/no-such-file.txt)
expect_output("unknown command" 2 "unknown command 'trian'" trian)
