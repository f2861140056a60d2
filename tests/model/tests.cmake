# tests/model: safetensors files and config.json (docs/model-files.md).
forja_c_test(test_safetensors model/test_safetensors.c)
forja_c_test(test_config model/test_config.c)
target_compile_definitions(test_config PRIVATE
                           FORJA_MODEL_CONFIGS="${CMAKE_CURRENT_SOURCE_DIR}/model/configs")

# forja's reader and writer driven from Python: st_cross.py checks them against a
# json+struct+numpy writer/reader and torch's / numpy's roundings; config_cross.py counts the
# parameters of PyTorch modules built from the same configs.
add_executable(st_tool model/st_tool.c)
target_link_libraries(st_tool PRIVATE forja_lib)
add_test(NAME safetensors_vs_python
         COMMAND ${FORJA_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/model/st_cross.py
                 $<TARGET_FILE:st_tool> ${FORJA_TEST_TMP}/st_cross)
set_tests_properties(safetensors_vs_python PROPERTIES LABELS unit TIMEOUT 300)
add_test(NAME config_vs_pytorch
         COMMAND ${FORJA_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/model/config_cross.py
                 $<TARGET_FILE:st_tool> ${CMAKE_CURRENT_SOURCE_DIR}/model/configs
                 ${FORJA_TEST_TMP}/config_cross)
set_tests_properties(config_vs_pytorch PROPERTIES LABELS unit TIMEOUT 300)
