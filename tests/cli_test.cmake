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
# the circuit implementation and probmoe-group (src/route/circuit*.c)
expect_output("worked example on the circuit" 0 "circuit: 23 nodes.*P\\(in S\\): 0\\.8625 0\\.6580 0\\.3420 0\\.1375"
              route --router probmoe --k 2 --impl circuit --marginals ${work}/example.txt)
expect_output("group-limited marginals" 0 "token 0: 0:0\\.623377 1:0\\.233766.*P\\(in S\\): 0\\.9730 0\\.9730 0\\.0270 0\\.0270"
              route --router probmoe-group --k 2 --groups 2 --max-groups 1 --marginals ${work}/example.txt)
expect_output("groups not dividing E" 1 "groups = 3 does not divide num_experts = 4; the groups are equal and contiguous"
              route --router probmoe-group --k 2 --groups 3 ${work}/example.txt)
expect_output("more groups than exist" 1 "max_groups = 3 > groups = 2"
              route --router probmoe-group --k 2 --groups 2 --max-groups 3 ${work}/example.txt)
expect_output("k above the groups' room" 1 "k = 3, but max_groups = 1 groups of 2 experts hold at most 2; need 1 <= k <= 2"
              route --router probmoe-group --k 3 --groups 2 --max-groups 1 ${work}/example.txt)
expect_output("group router on the DP" 1 "cannot express the group limit"
              route --router probmoe-group --k 2 --impl dp ${work}/example.txt)
expect_output("circuit for topk" 1 "topk has no subset distribution"
              route --router topk --k 2 --impl circuit ${work}/example.txt)
expect_output("unknown impl" 2 "--impl sdd: choose one of dp, circuit"
              route --router probmoe --k 2 --impl sdd ${work}/example.txt)
expect_output("zero groups" 2 "--groups '0' is out of range"
              route --router probmoe-group --k 2 --groups 0 ${work}/example.txt)
expect_output("unknown router" 2 "unknown router 'top3'" route --router top3 ${work}/example.txt)
expect_output("k above E" 1 "k = 9" route --router topk --k 9 ${work}/example.txt)
expect_output("ragged rows" 1 "line 2 has 2 logits" route ${work}/ragged.txt)
expect_output("missing file" 1 "cannot open" route ${work}/no-such-file.txt)
expect_output("unknown command" 2 "unknown command 'trian'" trian)

# route's input (route/logits_text.c): CRLF and blank lines are fine; NUL bytes, empty fields,
# non-finite, hexadecimal and out-of-range numbers are refused with the line and column.
file(WRITE ${work}/crlf.txt "\r\n1.3862944, 0.4054651 ,-0.4054651\t-1.3862944\r\n\r\n")
expect_output("CRLF, blank lines, mixed separators" 0 "token 0: 0:0\\.623377 1:0\\.233766"
              route --router probmoe --k 2 ${work}/crlf.txt)
execute_process(COMMAND printf "1 2\\0003 4\\n" OUTPUT_FILE ${work}/nul.txt)
file(SIZE ${work}/nul.txt nul_size)
if(NOT nul_size EQUAL 8)
  message(FATAL_ERROR "printf wrote ${nul_size} bytes to nul.txt, not 8")
endif()
expect_output("route: a NUL byte" 1 "nul.txt line 1, column 4: a NUL byte" route ${work}/nul.txt)
foreach(case "1,,2,3|column 3: an empty field" "1 2,|column 4: an empty field" "1 nan 2|column 3: 'nan' is not finite"
              "1 -inf 2|column 3: '-inf' is not finite" "0x1p3 2|column 1: '0x1p3' is a hexadecimal number"
              "1 1e39|column 3: '1e39' overflows a float" "1 2x|column 3: '2x' is not a number")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 text)
  list(GET parts 1 pattern)
  file(WRITE ${work}/bad.txt "${text}\n")
  expect_output("route: '${text}'" 1 "bad.txt line 1, ${pattern}" route ${work}/bad.txt)
endforeach()

# Every command's flags: the value's syntax (no trailing garbage, no nan or inf, no overflow)
# and range, with a message naming the flag, the value and what it may be; exit code 2.
function(expect_flag_error description pattern)
  expect_output("${description}" 2 "${pattern}" ${ARGN})
endfunction()
expect_flag_error("route --k 0" "--k '0' is out of range; give a whole number from 1 to 4096"
                  route --k 0 ${work}/example.txt)
expect_flag_error("route --k 2x" "--k '2x' is not a number" route --k 2x ${work}/example.txt)
expect_flag_error("route --seed -1" "--seed '-1' is out of range; give a whole number from 0 to 2147483647"
                  route --seed -1 ${work}/example.txt)
expect_flag_error("route --alpha nan" "--alpha 'nan' is not finite; give a finite number > 0"
                  route --router softmoe --alpha nan ${work}/example.txt)
expect_flag_error("route --cap 0.5" "--cap '0.5' is out of range; give a finite number >= 1"
                  route --router softmoe --cap 0.5 ${work}/example.txt)
expect_flag_error("route --kmax huge" "--kmax '99999999999' is out of range; give a whole number from 1 to 4096"
                  route --router probmoe-dyn --kmax 99999999999 ${work}/example.txt)
file(WRITE ${work}/text.txt "to be or not to be, that is the question\n")
set(train_flags train --data ${work}/text.txt --out ${work}/never)
expect_flag_error("train --lr nan" "probmoe train: --lr 'nan' is not finite; give a finite number > 0"
                  ${train_flags} --lr nan)
expect_flag_error("train --lr inf" "--lr 'inf' is not finite" ${train_flags} --lr inf)
expect_flag_error("train --lr -1" "--lr '-1' is out of range; give a finite number > 0" ${train_flags} --lr -1)
expect_flag_error("train --lr 0" "--lr '0' is out of range" ${train_flags} --lr 0)
expect_flag_error("train --batch 0" "--batch '0' is out of range; give a whole number from 1 to 2147483647"
                  ${train_flags} --batch 0)
expect_flag_error("train --batch 8x" "--batch '8x' is not a number" ${train_flags} --batch 8x)
expect_flag_error("train --batch huge" "--batch '99999999999' is out of range" ${train_flags} --batch 99999999999)
expect_flag_error("train --seed -1" "--seed '-1' is out of range; give a whole number from 0" ${train_flags} --seed -1)
expect_flag_error("train --steps 2.5" "--steps '2.5' is not a whole number" ${train_flags} --steps 2.5)
expect_flag_error("train --steps 1e300" "--steps '1e300' is out of range" ${train_flags} --steps 1e300)
expect_flag_error("train --clip hex" "--clip '0x1' is hexadecimal" ${train_flags} --clip 0x1)
expect_flag_error("train --min-lr-ratio 1.5" "--min-lr-ratio '1.5' is out of range; give a number in \\[0, 1\\]"
                  ${train_flags} --min-lr-ratio 1.5)
expect_flag_error("train --layers 2000" "--layers '2000' is out of range; give a whole number from 1 to 1024"
                  ${train_flags} --layers 2000)
expect_flag_error("train --accum huge" "--accum '2000000' is out of range; give a whole number from 1 to 1048576"
                  ${train_flags} --accum 2000000)
expect_flag_error("train --soft-budget 1e39" "--soft-budget '1e39' overflows a float" ${train_flags} --soft-budget 1e39)
expect_flag_error("train --tau inf" "--tau 'inf' is not finite" ${train_flags} --router softmoe --tau inf)
set(small_config "\"vocab_size\": 256, \"hidden_size\": 64, \"intermediate_size\": 64, \"num_hidden_layers\": 1,
  \"num_attention_heads\": 4, \"num_experts\": 4, \"num_experts_per_tok\": 2")
file(WRITE ${work}/train_config.json "{${small_config}, \"train\": {\"lr\": -1}}")
expect_flag_error("train config lr -1" "train_config.json: train.lr '-1' is out of range; give a finite number > 0"
                  train --config ${work}/train_config.json --data ${work}/text.txt --out ${work}/never)
file(WRITE ${work}/train_config.json "{${small_config}, \"train\": {\"steps\": 1e20}}")
expect_flag_error("train config steps 1e20" "train.steps '1e\\+20' is out of range"
                  train --config ${work}/train_config.json --data ${work}/text.txt --out ${work}/never)
# a model that cannot fit is refused with its estimate before anything is allocated or written
# (128 PiB of attention probabilities: no machine has that)
set(estimate "about [0-9.]+ PiB of memory \\(parameters [0-9.]+ MiB, gradients [0-9.]+ MiB, optimizer [0-9.]+ MiB")
set(estimate "${estimate}, activations [0-9.]+ PiB for a batch of 1024 × 1048576 tokens\\) but this machine has")
expect_output("train: a model larger than memory" 1 "training this model needs ${estimate}"
              ${train_flags} --max-positions 1048576 --seq 1048576 --batch 1024)
expect_flag_error("generate --temperature nan"
                  "probmoe generate: --temperature 'nan' is not finite; give a finite number >= 0"
                  generate --model ${work}/nothing --temperature nan)
expect_flag_error("generate --temperature -1" "--temperature '-1' is out of range"
                  generate --model ${work}/nothing --temperature -1)
expect_flag_error("generate --top-p 0" "--top-p '0' is out of range; give a number in \\(0, 1\\]"
                  generate --model ${work}/nothing --top-p 0)
expect_flag_error("generate --max-new -1" "--max-new '-1' is out of range; give a whole number from 0 to 1048576"
                  generate --model ${work}/nothing --max-new -1)
expect_flag_error("generate --max-new huge" "--max-new '99999999999' is out of range"
                  generate --model ${work}/nothing --max-new 99999999999)
expect_flag_error("generate --seed 1x" "--seed '1x' is not a number" generate --model ${work}/nothing --seed 1x)
expect_flag_error("generate --precision fp16" "probmoe generate: --precision 'fp16'; choose fp32 or bf16"
                  generate --model ${work}/nothing --precision fp16)
expect_flag_error("eval --batches 0" "probmoe eval: --batches '0' is out of range; give a whole number from 1"
                  eval --model ${work}/nothing --data ${work}/nothing --batches 0)
expect_flag_error("eval --seq inf" "--seq 'inf' is not finite"
                  eval --model ${work}/nothing --data ${work}/nothing --seq inf)
expect_flag_error("eval --limit -1" "--limit '-1' is out of range" eval --model ${work}/nothing --gsm8k x --limit -1)
expect_flag_error("eval --max-new 1e9" "--max-new '1e9' is out of range"
                  eval --model ${work}/nothing --gsm8k x --max-new 1e9)
expect_flag_error("eval --eval-batch 0"
                  "probmoe eval: --eval-batch '0' is out of range; give a whole number from 1 to 1024"
                  eval --model ${work}/nothing --data ${work}/nothing --eval-batch 0)
expect_flag_error("eval --eval-batch 1025" "--eval-batch '1025' is out of range"
                  eval --model ${work}/nothing --gsm8k x --eval-batch 1025)
expect_flag_error("eval --eval-batch 2.5" "--eval-batch '2.5' is not a whole number"
                  eval --model ${work}/nothing --gsm8k x --eval-batch 2.5)
expect_flag_error("eval --eval-batch" "--eval-batch needs a value" eval --model ${work}/nothing --eval-batch)
expect_flag_error("data --val-fraction nan"
                  "probmoe data: --val-fraction 'nan' is not finite; give a number in \\[0, 1\\)"
                  data prepare --out ${work}/never ${work}/text.txt --val-fraction nan)
expect_flag_error("data --val-fraction 1" "--val-fraction '1' is out of range" data prepare --out ${work}/never
                  ${work}/text.txt --val-fraction 1)
expect_flag_error("data arith --train 5x" "probmoe data arith: --train '5x' is not a number"
                  data arith --out ${work}/never --train 5x)
expect_flag_error("data arith --seed -1" "--seed '-1' is out of range" data arith --out ${work}/never --seed -1)
expect_flag_error("data arith --test huge" "--test '99999999999' is out of range"
                  data arith --out ${work}/never --test 99999999999)
expect_flag_error("tokenizer --vocab-size 10"
                  "probmoe tokenizer train: --vocab-size '10' is out of range; give a whole number from 257"
                  tokenizer train --vocab-size 10 --out ${work}/never.json ${work}/text.txt)
expect_flag_error("tokenizer --vocab-size nan" "--vocab-size 'nan' is not finite" tokenizer train --vocab-size nan
                  --out ${work}/never.json ${work}/text.txt)
expect_flag_error("compare --seeds 0" "--seeds 0; give 1 to 64 seeds" compare --seeds 0 --out ${work}/never)
expect_flag_error("compare --seeds 1.5" "--seeds '1.5' is not a whole number" compare --seeds 1.5 --out ${work}/never)
expect_flag_error("compare --measure-reps -1" "--measure-reps -1 and --measure-steps [0-9]+; each must be at least 1"
                  compare --measure-reps -1 --out ${work}/never)
if(EXISTS ${work}/never OR EXISTS ${work}/never.json)
  message(FATAL_ERROR "a refused command wrote ${work}/never")
endif()

# probmoe train: each bad input names the field, exits non-zero and writes nothing.
file(WRITE ${work}/empty.txt "")
file(WRITE ${work}/text.txt "to be or not to be, that is the question\n")
function(expect_train_error description pattern)
  file(REMOVE_RECURSE ${work}/out)
  expect_output("${description}" 2 "${pattern}" train --out ${work}/out ${ARGN})
  if(EXISTS ${work}/out)
    message(FATAL_ERROR "${description}: ${work}/out was created")
  endif()
endfunction()
expect_train_error("k above E" "num_experts_per_tok = 9 exceeds num_experts = 8"
                   --data ${work}/text.txt --experts 8 --k 9)
expect_train_error("heads not dividing hidden" "num_attention_heads = 6 does not divide hidden_size = 256"
                   --data ${work}/text.txt --heads 6)
expect_train_error("sequence too long" "--seq 2048 is longer than max_position_embeddings = 1024"
                   --data ${work}/text.txt --seq 2048)
expect_train_error("unknown router" "unknown router 'top2'" --data ${work}/text.txt --router top2)
expect_train_error("no data" "with --data")
expect_train_error("unknown precision" "--precision 'fp16'; choose fp32 or bf16" --data ${work}/text.txt --precision fp16)
expect_train_error("unknown fp32 library" "--fp32-matmul 'mkl'; choose measured, openblas, onednn or auto"
                   --data ${work}/text.txt --fp32-matmul mkl)
expect_train_error("unknown chat format" "--chat-format 'vicuna'; choose plain, chatml, llama2, tulu"
                   --gsm8k ${work}/text.txt --chat-format vicuna)
expect_train_error("chat format without GSM8K" "--chat-format applies to --gsm8k fine-tuning"
                   --data ${work}/text.txt --chat-format tulu)
file(REMOVE_RECURSE ${work}/out)
expect_output("missing data file" 1 "cannot open the data file" train --data ${work}/nothing.txt --out ${work}/out)
expect_output("empty data file" 1 "is empty" train --data ${work}/empty.txt --out ${work}/out)
expect_output("too little data" 1 "too few for training" train --data ${work}/text.txt --out ${work}/out)
if(EXISTS ${work}/out)
  message(FATAL_ERROR "a failed train run created ${work}/out")
endif()
expect_output("generate without a model" 1 "does not exist" generate --model ${work}/nothing)

# probmoe data arith: a bad setting is named and writes nothing; a small run writes both files
# in GSM8K's format; existing files are replaced only with --force.
file(REMOVE_RECURSE ${work}/arith)
expect_output("arith: operands of 1" 2 "max_operand \\(--max-operand\\) is 1"
              data arith --out ${work}/arith --max-operand 1)
expect_output("arith: min above max" 2 "min_steps \\(--min-steps\\) 3 is above max_steps"
              data arith --out ${work}/arith --min-steps 3 --max-steps 2)
expect_output("arith: too many problems" 2 "allow at most 1152 distinct problems"
              data arith --out ${work}/arith --max-steps 1 --max-operand 2 --train 5000)
expect_output("arith: not a number" 2 "--train 'many' is not a number; give a whole number"
              data arith --out ${work}/arith --train many)
expect_output("arith: unknown flag" 2 "unknown option '--steps'" data arith --out ${work}/arith --steps 2)
expect_output("arith: no directory" 2 "--out DIR" data arith --train 10)
if(EXISTS ${work}/arith)
  message(FATAL_ERROR "a refused data arith created ${work}/arith")
endif()
expect_output("arith: small run" 0 "wrote .*train.jsonl \\(40 problems\\).*test.jsonl \\(8 problems\\)"
              data arith --out ${work}/arith --train 40 --test 8 --seed 3 --max-steps 3)
file(STRINGS ${work}/arith/train.jsonl train_lines)
file(STRINGS ${work}/arith/test.jsonl test_lines)
list(LENGTH train_lines train_count)
list(LENGTH test_lines test_count)
if(NOT train_count EQUAL 40 OR NOT test_count EQUAL 8)
  message(FATAL_ERROR "data arith wrote ${train_count} training and ${test_count} test lines, not 40 and 8")
endif()
set(question "\"question\":\"[A-Z][a-z]+ has [0-9]+ [a-z]+\\..* How many [a-z]+ does [A-Z][a-z]+ have now\\?\"")
set(answer "\"answer\":\"[0-9]+ [-+*] [0-9]+ = [0-9]+\\\\n.*#### [0-9]+\"")
foreach(line IN LISTS train_lines test_lines)
  if(NOT line MATCHES "^{${question},${answer}}$")
    message(FATAL_ERROR "data arith wrote a line unlike GSM8K's: ${line}")
  endif()
endforeach()
file(READ ${work}/arith/train.jsonl seed3_train)
expect_output("arith: existing files" 1 "already exists.*--force" data arith --out ${work}/arith --train 40 --test 8)
file(READ ${work}/arith/train.jsonl kept_train)
if(NOT kept_train STREQUAL seed3_train)
  message(FATAL_ERROR "a refused data arith changed ${work}/arith/train.jsonl")
endif()
expect_output("arith: --force" 0 "wrote" data arith --out ${work}/arith --train 40 --test 8 --force)
file(READ ${work}/arith/train.jsonl seed1_train)
if(seed1_train STREQUAL seed3_train)
  message(FATAL_ERROR "data arith --force (seed 1) left the seed 3 problems in place")
endif()

# train with softmoe: the learned budget in the routing table, metrics.jsonl and plots/; then a
# topk model fine-tuned as softmoe with the router frozen
string(REPEAT "the cat sat on the mat and the dog ran after it. " 200 budget_text)
file(WRITE ${work}/budget.txt "${budget_text}")
file(REMOVE_RECURSE ${work}/soft ${work}/topk_base ${work}/rerouted)
set(tiny --layers 2 --hidden 32 --heads 4 --intermediate 32 --experts 4 --k 2 --batch 4 --seq 32 --steps 12
    --eval-interval 12 --eval-batches 2)
expect_output("train softmoe" 0 "learned k_l +alpha.*the learned k_l sum to the budget K = 5"
              train --data ${work}/budget.txt --out ${work}/soft --router softmoe --soft-budget 5 ${tiny})
file(READ ${work}/soft/metrics.jsonl soft_metrics)
if(NOT soft_metrics MATCHES "\"soft_k\": [0-9.]+, \"alpha\": [0-9.]+" OR NOT EXISTS ${work}/soft/plots/budget_k.gp)
  message(FATAL_ERROR "the softmoe run did not log or plot its learned budget")
endif()
expect_output("train topk base" 0 "trained to step 12" train --data ${work}/budget.txt --out ${work}/topk_base
              --router topk ${tiny})
expect_output("fine-tune rerouted and frozen" 0 "routing in the last step \\(softmoe\\)"
              train --data ${work}/budget.txt --init ${work}/topk_base/model --router softmoe --freeze-router
              --out ${work}/rerouted --steps 4 --batch 4 --seq 32 --eval-interval 4 --eval-batches 2)
file(READ ${work}/rerouted/model/config.json rerouted_config)
if(NOT rerouted_config MATCHES "\"router\":[ \t]*\"softmoe\"")
  message(FATAL_ERROR "the rerouted model is not softmoe:\n${rerouted_config}")
endif()

# Another family from --config: a Qwen2-MoE config without a probmoe object, trained with
# probmoe, saved back as qwen2_moe, and decoded; an unsupported field is refused by name.
file(REMOVE_RECURSE ${work}/qwen)
file(WRITE ${work}/qwen_config.json "{\"model_type\": \"qwen2_moe\", \"vocab_size\": 256, \"hidden_size\": 32,
  \"intermediate_size\": 48, \"moe_intermediate_size\": 16, \"shared_expert_intermediate_size\": 24,
  \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_experts\": 4,
  \"num_experts_per_tok\": 2, \"tie_word_embeddings\": true, \"max_position_embeddings\": 64}")
expect_output("train qwen2_moe" 0 "trained to step 6" train --config ${work}/qwen_config.json --router probmoe
              --data ${work}/budget.txt --out ${work}/qwen --steps 6 --batch 4 --seq 32 --eval-interval 6
              --eval-batches 2)
file(READ ${work}/qwen/model/config.json qwen_saved)
if(NOT qwen_saved MATCHES "\"model_type\":[ \t]*\"qwen2_moe\"" OR NOT qwen_saved MATCHES "\"Qwen2MoeForCausalLM\""
   OR NOT qwen_saved MATCHES "\"shared_expert_intermediate_size\":[ \t]*24"
   OR NOT qwen_saved MATCHES "\"router\":[ \t]*\"probmoe\"")
  message(FATAL_ERROR "the qwen2_moe run was not saved back as qwen2_moe with its router:\n${qwen_saved}")
endif()
expect_output("generate qwen2_moe" 0 "tokens/s" generate --model ${work}/qwen/model --prompt "the cat" --max-new 8)
# Its dense layers: with decoder_sparse_step 2, layers 0 and 2 are dense MLPs; the routing table
# lists the MoE layers 1 and 3 by number, softmoe's budget covers those two, and the config
# keeps the dense layers when saved back.
file(REMOVE_RECURSE ${work}/qwen_dense)
file(READ ${work}/qwen_config.json qwen_config)
string(REPLACE "\"num_hidden_layers\": 2" "\"num_hidden_layers\": 4, \"decoder_sparse_step\": 2" qwen_dense_config
       "${qwen_config}")
file(WRITE ${work}/qwen_dense_config.json "${qwen_dense_config}")
expect_output("train qwen2_moe with dense layers" 0
              "learned k_l +alpha\n +1 +[0-9.]+ [^\n]*\n +3 +[0-9.]+ [^\n]*\n  the learned k_l sum to the budget K = 4\n"
              train --config ${work}/qwen_dense_config.json --router softmoe --data ${work}/budget.txt
              --out ${work}/qwen_dense --steps 4 --batch 4 --seq 32 --eval-interval 4 --eval-batches 2)
file(READ ${work}/qwen_dense/model/config.json qwen_dense_saved)
if(NOT qwen_dense_saved MATCHES "\"decoder_sparse_step\":[ \t]*2")
  message(FATAL_ERROR "the dense layers were not saved back:\n${qwen_dense_saved}")
endif()
expect_output("generate qwen2_moe with dense layers" 0 "mean active experts per MoE layer: [0-9.]+ [0-9.]+\\]"
              generate --model ${work}/qwen_dense/model --prompt "the cat" --max-new 4)
# probmoe info reads the config alone: the layers by kind and the parameters. 4 layers of
# hidden 32 and 4 heads over 2 KV heads (attention 2·32² + 2·16·32 = 3072, biases 64, norms
# 64), MoE layers 1 and 3 (router 4·32, shared expert 3·32·24 + 32, 4 experts of 3·32·16),
# dense 0 and 2 (3·32·48), a tied 256 × 32 embedding and the final norm 32: 47,456; idle at
# k = 2: 2 layers × 2 experts × 1,536 = 6,144.
expect_output("info of the dense-layer config" 0
              "layers      4: MoE layers 1, 3\n +dense MLP layers \\(width 48\\): 0, 2\n.*parameters  47456, 41312 active"
              info --config ${work}/qwen_dense_config.json)
# the published sizes of OLMoE-1B-7B (6.9B, 1.3B active), Qwen1.5-MoE-A2.7B (14.3B, 2.7B) and
# Mixtral-8x7B (46.7B, 12.9B), from their Hugging Face configs (the fuzz seeds)
expect_output("info: OLMoE's size" 0 "parameters  6919161856, 1282017280 active per token at k = 8"
              info --config ${CMAKE_CURRENT_LIST_DIR}/../fuzz/corpus/config/olmoe.json --batch 1 --seq 16)
expect_output("info: Qwen1.5-MoE's size" 0 "parameters  14315784192, 2689173504 active per token at k = 4"
              info --config ${CMAKE_CURRENT_LIST_DIR}/../fuzz/corpus/config/qwen2_moe.json --batch 1 --seq 16)
expect_output("info: Mixtral's size" 0 "parameters  46702792704, 12879925248 active per token at k = 2"
              info --config ${CMAKE_CURRENT_LIST_DIR}/../fuzz/corpus/config/mixtral.json --batch 1 --seq 16)
expect_output("info of a model directory" 0 "family      qwen2_moe.*memory for batches of 2 × 16 tokens"
              info --model ${work}/qwen_dense/model --batch 2 --seq 16)
expect_output("info: no such directory" 1 "is not a directory" info --model ${work}/nowhere)
expect_output("info: longer than the context" 2 "longer than the model's context" info --config
              ${work}/qwen_dense_config.json --seq 100000)
file(REMOVE_RECURSE ${work}/qwen_dense_data ${work}/qwen_dense_analytics)
expect_output("prepare bytes" 0 "tokenizer bytes" data prepare --out ${work}/qwen_dense_data ${work}/budget.txt)
expect_output("eval qwen2_moe with dense layers" 0 "top-k mass\n +1 [^\n]*\n +3 [^\n]*\n"
              eval --model ${work}/qwen_dense/model --data ${work}/qwen_dense_data --batches 2 --seq 32
              --analytics ${work}/qwen_dense_analytics)
file(STRINGS ${work}/qwen_dense_analytics/routing_layers.csv dense_rows)
list(GET dense_rows 1 dense_first)
list(GET dense_rows 2 dense_second)
list(LENGTH dense_rows dense_count)
if(NOT dense_count EQUAL 3 OR NOT dense_first MATCHES "^1," OR NOT dense_second MATCHES "^3,")
  message(FATAL_ERROR "the analytics should list MoE layers 1 and 3 only:\n${dense_rows}")
endif()
file(WRITE ${work}/rope_config.json "{${small_config},
  \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}")
expect_output("train with rope scaling" 2 "rope_config.json: rope_scaling is not supported: rope type \"dynamic\""
              train --config ${work}/rope_config.json --data ${work}/budget.txt --out ${work}/never)

# probmoe compare: bad input is refused before anything runs.
file(REMOVE_RECURSE ${work}/cmp)
expect_output("compare: unknown router" 2 "unknown router 'top3'" compare --routers topk,top3 --out ${work}/cmp)
expect_output("compare: unknown preset" 2 "unknown preset 'huge'" compare --preset huge)
expect_output("compare: unknown protocol" 2 "unknown protocol 'pretrain'; choose finetune" compare --protocol pretrain
              --out ${work}/cmp)
expect_output("compare: impossible task" 2 "arithmetic task .* max_steps \\(--max-steps\\) is 9" compare --arith-max-steps 9
              --out ${work}/cmp)
expect_output("compare: too many test problems asked" 2 "exceeds the 20 test problems" compare --arith-test 20
              --arith-limit 30 --out ${work}/cmp)
expect_output("compare: a router twice" 2 "listed twice" compare --routers topk,probmoe,topk --out ${work}/cmp)
expect_output("compare: groups that do not divide E" 2 "--groups 3 --max-groups 1; G must divide the 8 experts"
              compare --groups 3 --out ${work}/cmp)
expect_output("compare: a limit past the groups" 2 "--groups 4 --max-groups 5; G must divide the 8 experts and M be 1 to G"
              compare --groups 4 --max-groups 5 --out ${work}/cmp)
if(EXISTS ${work}/cmp)
  message(FATAL_ERROR "a refused compare created ${work}/cmp")
endif()
# train: budgets and ranges that cannot work are refused before anything is written
expect_output("train: budget at L" 2 "budget K = 4 must lie strictly between the MoE layers M = 4 and M·E = 32"
              train --data ${work}/corpus.txt --router softmoe --soft-budget 4 --out ${work}/never)
expect_output("train: budget at L·E" 2 "budget K = 32 must lie strictly between"
              train --data ${work}/corpus.txt --router softmoe --soft-budget 32 --out ${work}/never)
expect_output("train: kmin above kmax" 2 "k_min = 3, k_max = 2"
              train --data ${work}/corpus.txt --router probmoe-dyn --kmin 3 --kmax 2 --out ${work}/never)
expect_output("train: kmax above E" 2 "k_max = 9; need 0 <= k_min <= k_max <= num_experts = 8"
              train --data ${work}/corpus.txt --router probmoe-dyn --kmin 1 --kmax 9 --out ${work}/never)
if(EXISTS ${work}/never)
  message(FATAL_ERROR "a refused train created ${work}/never")
endif()

# probmoe compare end to end on a tiny budget (the fine-tuning protocol): a top-k backbone, each
# router fine-tuned from it, a report with the claims and a row per router; a second run reuses
# every finished stage; other settings in the same directory are refused.
get_filename_component(repo ${CMAKE_CURRENT_LIST_DIR}/.. ABSOLUTE)
set(compare_args compare --routers topk,probmoe --seeds 2 --pretrain-steps 6 --finetune-steps 2 --gsm8k-limit 2
    --arith-train 200 --arith-test 20 --arith-limit 4 --max-new 8 --measure-reps 2 --measure-steps 1
    --out ${work}/cmp)
file(REMOVE_RECURSE ${work}/cmp)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PROBMOE_ROOT=${repo} ${PROBMOE} ${compare_args}
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT EXISTS ${work}/cmp/report.md)
  message(FATAL_ERROR "compare failed: ${rc}\n${out}${err}")
endif()
foreach(made runs/backbone-seed1/pretrain/model/config.json runs/backbone-seed2/pretrain/model/config.json
        runs/probmoe-seed2/finetune/model/config.json runs/probmoe-seed1/eval.json measure/topk-rep2.json
        measure/probmoe-rep1.json arith/test.jsonl)
  if(NOT EXISTS ${work}/cmp/${made})
    message(FATAL_ERROR "compare did not make ${made}")
  endif()
endforeach()
if(EXISTS ${work}/cmp/runs/probmoe-seed1/pretrain)
  message(FATAL_ERROR "the fine-tuning protocol pre-trained a router of its own")
endif()
file(READ ${work}/cmp/runs/probmoe-seed1/finetune/model/config.json tuned_config)
if(NOT tuned_config MATCHES "\"router\":[ \t]*\"probmoe\"")
  message(FATAL_ERROR "the fine-tuned model does not route with probmoe:\n${tuned_config}")
endif()
file(READ ${work}/cmp/runs/topk-seed1/eval.json topk_eval)
if(NOT topk_eval MATCHES "\"groups\": 4, \"mean_groups\": [12][.0-9]*, \"max_groups\": [12][,}]")
  message(FATAL_ERROR "eval.json lacks the groups a token spans (G = 4 of the 8 experts):\n${topk_eval}")
endif()
file(READ ${work}/cmp/report.md report)
if(NOT report MATCHES "G = 4 equal, contiguous groups of 2" OR NOT report MATCHES "groups_per_layer"
   OR NOT report MATCHES "## Claims" OR NOT report MATCHES "\\| probmoe beats topk on arithmetic exact match"
   OR NOT report MATCHES "\\| topk \\| [0-9.]+ ± [0-9.]+ \\|"
   OR NOT report MATCHES "\\| probmoe \\| [-+][0-9.]+ \\[[-+][0-9.]+, [-+][0-9.]+\\]")
  message(FATAL_ERROR "report.md lacks the claims, figures or differences:\n${report}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env PROBMOE_ROOT=${repo} ${PROBMOE} ${compare_args}
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR out MATCHES "pre-training" OR out MATCHES "measuring" OR NOT out MATCHES "wrote")
  message(FATAL_ERROR "a second compare did not reuse the finished runs:\n${out}${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env PROBMOE_ROOT=${repo} ${PROBMOE} compare --routers topk
                --pretrain-steps 7 --out ${work}/cmp OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(rc EQUAL 0 OR NOT err MATCHES "other settings")
  message(FATAL_ERROR "compare accepted other settings in the same directory:\n${out}${err}")
endif()

# --protocol scratch: each router pre-trained on its own, no backbone
file(REMOVE_RECURSE ${work}/scratch)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PROBMOE_ROOT=${repo} ${PROBMOE} compare --protocol scratch
                --routers sample-softmax --seeds 1 --pretrain-steps 4 --finetune-steps 2 --gsm8k-limit 2
                --arith-train 200 --arith-test 20 --arith-limit 2 --max-new 8 --measure-reps 1 --measure-steps 1
                --out ${work}/scratch OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT EXISTS ${work}/scratch/runs/sample-softmax-seed1/pretrain/model/config.json
   OR EXISTS ${work}/scratch/runs/backbone-seed1 OR NOT EXISTS ${work}/scratch/report.md)
  message(FATAL_ERROR "compare --protocol scratch with an ablation router failed: ${rc}\n${out}${err}")
endif()

# probmoe eval on the compare run's model: loss on the shards and routing analytics files.
file(REMOVE_RECURSE ${work}/analytics)
expect_output("eval with analytics" 0 "routing over the same rows" eval --model ${work}/cmp/runs/topk-seed1/finetune/model
              --data ${work}/cmp/data --batches 2 --seq 32 --analytics ${work}/analytics)
file(STRINGS ${work}/analytics/routing_layers.csv layer_rows)
list(LENGTH layer_rows row_count)
if(NOT row_count EQUAL 3) # a header and one row per layer of the 2-layer quick model
  message(FATAL_ERROR "routing_layers.csv has ${row_count} lines")
endif()
expect_output("eval analytics with groups" 0 "groups a token's experts span \\(of G = 2\\), mean and most: [12][.0-9]* \\([12]\\)"
              eval --model ${work}/cmp/runs/topk-seed1/finetune/model --data ${work}/cmp/data --batches 2 --seq 32
              --analytics ${work}/analytics --groups 2)
file(READ ${work}/analytics/routing_layers.csv layers_csv)
if(NOT layers_csv MATCHES ",groups,mean_groups,max_groups," OR NOT layers_csv MATCHES "\n0,[^\n]*,2,[12][.0-9]*,[12],")
  message(FATAL_ERROR "routing_layers.csv lacks the groups columns:\n${layers_csv}")
endif()
expect_output("eval groups that do not divide E" 1 "groups = 3; need a divisor of the 8 experts"
              eval --model ${work}/cmp/runs/topk-seed1/finetune/model --data ${work}/cmp/data --batches 2 --seq 32
              --analytics ${work}/analytics --groups 3)
expect_output("eval --groups without analytics" 2 "--groups applies to --analytics"
              eval --model ${work}/cmp/runs/topk-seed1/finetune/model --data ${work}/cmp/data --groups 2)
expect_output("eval analytics without data" 2 "give both" eval --model ${work}/cmp/runs/topk-seed1/finetune/model
              --gsm8k --analytics ${work}/analytics)
# The arithmetic problems go through GSM8K evaluation as they are.
expect_output("eval on arith problems" 0 "gsm8k \\(.*arith/test.jsonl\\): 2 examples"
              eval --model ${work}/cmp/runs/topk-seed1/finetune/model --gsm8k ${work}/arith/test.jsonl
              --limit 2 --max-new 4)
# A chat format: fine-tuning records it in the model's config.json and eval prompts with it
# unless told otherwise; a format whose special tokens the tokenizer (GPT-2's) lacks is refused
# by name, before anything is written.
file(REMOVE_RECURSE ${work}/tulu ${work}/chatml)
set(finetune_args train --init ${work}/cmp/runs/topk-seed1/finetune/model --gsm8k ${work}/arith/train.jsonl
    --steps 2 --batch 2 --seq 64)
expect_output("fine-tune in the tulu format" 0 "saved the model" ${finetune_args} --chat-format tulu --out ${work}/tulu)
expect_output("eval in the model's chat format" 0 "the tulu chat format the model was fine-tuned with"
              eval --model ${work}/tulu/model --gsm8k ${work}/arith/test.jsonl --limit 1 --max-new 2)
expect_output("chatml without its tokens" 1 "--chat-format chatml writes <\\|im_start\\|> as a special token"
              ${finetune_args} --chat-format chatml --out ${work}/chatml)
if(EXISTS ${work}/chatml/model)
  message(FATAL_ERROR "a refused chat format saved ${work}/chatml/model")
endif()
expect_output("eval chatml without its tokens" 1 "has no such token"
              eval --model ${work}/tulu/model --gsm8k ${work}/arith/test.jsonl --chat-format chatml --limit 1)
expect_output("eval chat format without GSM8K" 2 "--chat-format applies to --gsm8k"
              eval --model ${work}/tulu/model --data ${work}/nothing --chat-format tulu)
# One row at a time and three per forward pass and decoding step: the same answers and score.
foreach(rows 1 3)
  execute_process(COMMAND ${PROBMOE} eval --model ${work}/cmp/runs/topk-seed1/finetune/model
                  --gsm8k ${work}/arith/test.jsonl --limit 5 --max-new 6 --eval-batch ${rows}
                  --out ${work}/arith_rows${rows}.jsonl
                  OUTPUT_VARIABLE out_rows${rows} ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "eval --eval-batch ${rows}: exit code ${rc}\n${out_rows${rows}}${err}")
  endif()
  string(REGEX REPLACE ", [0-9.]+ s\n" "" out_rows${rows} "${out_rows${rows}}") # the time differs
  string(REPLACE "arith_rows${rows}" "arith_rows" out_rows${rows} "${out_rows${rows}}")
  file(READ ${work}/arith_rows${rows}.jsonl records_rows${rows})
  # each example's loss agrees to float rounding, not to all 17 digits cJSON writes
  string(REGEX REPLACE "\"answer_loss\":[^,]*," "" records_rows${rows} "${records_rows${rows}}")
endforeach()
if(NOT out_rows1 STREQUAL out_rows3 OR NOT records_rows1 STREQUAL records_rows3)
  message(FATAL_ERROR "eval --eval-batch 3 differs from --eval-batch 1:\n${out_rows1}\n${out_rows3}")
endif()
expect_output("generate from a run directory" 0 "mean active experts per layer"
              generate --model ${work}/cmp/runs/topk-seed1/finetune --prompt "Question:" --max-new 4 --temperature 0)
expect_output("generate with bf16 weights" 0 "mean active experts per layer"
              generate --model ${work}/cmp/runs/topk-seed1/finetune --prompt "Question:" --max-new 4 --temperature 0
              --precision bf16)
