execute_process(COMMAND ${PROBMOE} --version OUTPUT_VARIABLE out RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "probmoe")
  message(FATAL_ERROR "probmoe --version failed: ${rc} ${out}")
endif()
