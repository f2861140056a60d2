# src/nn: kernels (forward/backward pairs, GEMM); no I/O.
target_sources(forja_lib PRIVATE
  src/nn/gemm.c src/nn/gemm_small.c src/nn/norm.c src/nn/rope.c src/nn/attention.c src/nn/act.c src/nn/embed.c
  src/nn/loss.c src/nn/dropout.c src/nn/vec.c)
# The row loops are written for the vectoriser, which GCC runs fully only at -O3.
set_source_files_properties(src/nn/vec.c src/nn/act.c src/nn/norm.c src/nn/rope.c src/nn/gemm_small.c
                            src/nn/embed.c PROPERTIES COMPILE_OPTIONS "-O3")
# The few-rows GEMM multiplies and adds in one instruction (FMA) where the CPU has it.
set_property(SOURCE src/nn/gemm_small.c APPEND PROPERTY COMPILE_OPTIONS "-ffp-contract=fast")
