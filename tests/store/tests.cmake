# tests/store: the service's data directory (src/store). Included from tests/CMakeLists.txt.
forja_c_test(test_store store/test_store.c)
target_include_directories(test_store PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
