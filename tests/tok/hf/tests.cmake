# tests/tok/hf: Hugging Face tokenizer.json support (src/tok/hf.c). Included by
# tests/CMakeLists.txt, which defines forja_c_test, FORJA_NODE and FORJA_TEST_TMP.
#   test_hf             unit: malformed and unsupported files, hand-computed merges, NFC examples
#   nfc_table_current   the committed src/tok/nfc_table.c is what its generator writes
#   tok_hf_parity       ids against npm @huggingface/transformers (Llama 3 and Qwen 3 files, and
#                       forja-written cl100k/r50k files) and npm tiktoken, 2 MB of the corpus
#   tok_hf_parity_corpus  the same on 20 MB of the corpus (label corpus: minutes)
forja_c_test(test_hf tok/test_hf.c)

add_test(NAME nfc_table_current COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/tok/nfc_table.sh)
set_tests_properties(nfc_table_current PROPERTIES LABELS parity)

add_test(NAME tok_hf_parity
         COMMAND ${FORJA_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/tok/hf_parity.js $<TARGET_FILE:tok_dump>
                 ${FORJA_TEST_TMP}/hf 2000000)
set_tests_properties(tok_hf_parity PROPERTIES LABELS parity TIMEOUT 900)

add_test(NAME tok_hf_parity_corpus
         COMMAND ${FORJA_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/tok/hf_parity.js $<TARGET_FILE:tok_dump>
                 ${FORJA_TEST_TMP}/hf-corpus 20000000)
set_tests_properties(tok_hf_parity_corpus PROPERTIES LABELS "parity;corpus" TIMEOUT 3000)
