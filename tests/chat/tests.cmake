# tests/chat: chat templates (src/chat). Included from tests/CMakeLists.txt.
#
#   test_chat                C unit tests: syntax errors, unsupported constructs, hostile
#                            templates (nesting, loops, output size), the span rule's errors
#   chat_jinja_parity        every template x conversation rendered by forja and by npm
#                            @huggingface/jinja 0.5.11, byte for byte; spans against a JS
#                            mirror of the span rule; tokens against tiktoken and
#                            transformers.js (tests/chat/jinja_parity.mjs)
#   chat_case_table_current  src/chat/case.c is what tests/chat/gen_case_table.mjs writes
forja_c_test(test_chat chat/test_chat.c)

add_executable(chat_dump chat/chat_dump.c)
target_link_libraries(chat_dump PRIVATE forja_lib)

add_test(NAME chat_jinja_parity
         COMMAND ${FORJA_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/chat/jinja_parity.mjs
                 $<TARGET_FILE:chat_dump>)
set_tests_properties(chat_jinja_parity PROPERTIES LABELS parity TIMEOUT 900)

add_test(NAME chat_case_table_current
         COMMAND sh -c "${FORJA_NODE} '${CMAKE_CURRENT_SOURCE_DIR}/chat/gen_case_table.mjs' | diff -u '${PROJECT_SOURCE_DIR}/src/chat/case.c' -")
set_tests_properties(chat_case_table_current PROPERTIES LABELS parity)
