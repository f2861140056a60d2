# tests/infer: the inference engine (src/infer) against the model's full forward.
forja_c_test(test_infer infer/test_infer.c)
target_include_directories(test_infer PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})

# forja chat end to end: in process against forja generate, fine-tunes made by forja serve,
# --url against a scripted HTTP server and forja serve (tests/cli/test_chat.sh).
add_test(NAME cli_chat COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_chat.sh $<TARGET_FILE:forja>)
set_tests_properties(cli_chat PROPERTIES LABELS cli TIMEOUT 600)
