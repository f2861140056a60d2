# tests/train: fine-tuning (src/train). Included from tests/CMakeLists.txt.
#
#   train_steps          tool: K optimizer steps on a reference case (train_steps.c)
#   train_optim_parity   those steps against torch.optim.AdamW (parity.cmake)
forja_c_test(test_train train/test_train.c)
target_include_directories(test_train PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_executable(train_steps train/train_steps.c)
target_link_libraries(train_steps PRIVATE forja_lib)
include(${CMAKE_CURRENT_LIST_DIR}/parity.cmake OPTIONAL)

# forja train end to end: quality on the lab's data, reproducibility, resume after SIGTERM and
# kill -9, LoRA, bad data (tests/cli/test_train.sh).
add_test(NAME cli_train COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_train.sh $<TARGET_FILE:forja>)
set_tests_properties(cli_train PROPERTIES LABELS cli TIMEOUT 1500)

# The trainer's data pipeline (train_dataset_load): ids and loss masks of chat and
# prompt/completion files, a model with a default system prompt, truncation, against ChatML
# rendered and tokenized span by span with npm tiktoken (tests/train/masking.mjs).
add_executable(dataset_dump train/dataset_dump.c)
target_link_libraries(dataset_dump PRIVATE forja_lib)
add_test(NAME train_masking
         COMMAND ${FORJA_NODE} ${CMAKE_CURRENT_LIST_DIR}/masking.mjs $<TARGET_FILE:dataset_dump>
                 $<TARGET_FILE:forja> ${FORJA_TEST_TMP}/masking)
set_tests_properties(train_masking PROPERTIES LABELS parity TIMEOUT 300)
