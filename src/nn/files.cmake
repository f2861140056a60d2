# src/nn: kernels (forward/backward pairs, GEMM); no I/O.
target_sources(forja_lib PRIVATE
  src/nn/gemm.c src/nn/norm.c src/nn/rope.c src/nn/attention.c src/nn/act.c src/nn/embed.c
  src/nn/loss.c src/nn/dropout.c)
