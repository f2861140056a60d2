# tests/infer: the inference engine (src/infer) against the model's full forward.
forja_c_test(test_infer infer/test_infer.c)
target_include_directories(test_infer PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
