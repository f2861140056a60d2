# src/nn: kernels (forward/backward pairs, GEMM); no I/O.
target_sources(forja_lib PRIVATE)
