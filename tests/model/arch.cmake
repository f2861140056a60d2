# tests/model/arch.cmake - the engine against the PyTorch reference (tests/reference/): one
# test per case; each writes a random model folder and batch with make_case.py and compares
# logits (full and KV-cache), loss, counts and every trainable gradient (test_arch.c).
add_executable(test_arch model/test_arch.c)
target_link_libraries(test_arch PRIVATE forja_lib)

set(FORJA_ARCH_CASES
  "llama_gqa|--arch llama --preset llama_gqa --seed 1"
  "llama_tied_mha|--arch llama --preset llama_tied_mha --seed 2"
  "llama3_scaled|--arch llama --preset llama3_scaled --seed 3"
  "llama_bias|--arch llama --preset llama_bias --seed 4"
  "llama_headdim|--arch llama --preset llama_headdim --seed 5"
  "mistral|--arch llama --preset mistral --seed 6"
  "qwen2|--arch qwen2 --preset qwen2 --seed 7"
  "gpt2|--arch gpt2 --preset gpt2 --seed 8"
  "llama_bf16|--arch llama --preset llama_gqa --seed 9 --dtype bf16"
  "qwen2_f16|--arch qwen2 --preset qwen2 --seed 10 --dtype f16"
  "lora_llama_all|--arch llama --preset llama_gqa --seed 11 --lora 4,8,q_proj+k_proj+v_proj+o_proj+gate_proj+up_proj+down_proj"
  "lora_llama3_qv|--arch llama --preset llama3_scaled --seed 12 --lora 8,16,q_proj+v_proj"
  "lora_qwen2_attn|--arch qwen2 --preset qwen2 --seed 13 --lora 8,32,q_proj+k_proj+v_proj+o_proj"
  "lora_gpt2_all|--arch gpt2 --preset gpt2 --seed 14 --lora 4,16,c_attn+c_proj+c_fc"
  "lora_gpt2_proj|--arch gpt2 --preset gpt2 --seed 15 --lora 2,4,c_proj"
)
foreach(case IN LISTS FORJA_ARCH_CASES)
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 name)
  list(GET parts 1 args)
  separate_arguments(args)
  add_test(NAME arch_${name}
           COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/model/arch_case.sh $<TARGET_FILE:test_arch>
                   ${FORJA_TEST_TMP}/arch/${name} ${args})
  set_tests_properties(arch_${name} PROPERTIES LABELS parity TIMEOUT 300)
endforeach()

# forja models / render / generate end to end (built-in model, reference folders, bad input).
add_test(NAME cli_models COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_models.sh $<TARGET_FILE:forja>)
set_tests_properties(cli_models PROPERTIES LABELS cli TIMEOUT 900)

forja_c_test(test_model_load model/test_model_load.c)
