# src/nn: kernels (forward/backward pairs, GEMM); no I/O.
target_sources(forja_lib PRIVATE
  src/nn/gemm.c src/nn/norm.c src/nn/rope.c src/nn/attention.c src/nn/act.c src/nn/embed.c
  src/nn/loss.c src/nn/dropout.c src/nn/vec.c)
# The row loops are written for the vectoriser, which GCC runs fully only at -O3.
set_source_files_properties(src/nn/vec.c src/nn/act.c src/nn/norm.c src/nn/rope.c
                            src/nn/embed.c PROPERTIES COMPILE_OPTIONS "-O3")
