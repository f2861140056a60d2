# tests/nn: kernels against naive loops and finite differences.
forja_c_test(test_nn nn/test_nn.c)
