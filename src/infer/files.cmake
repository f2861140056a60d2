# src/infer: the inference engine (continuous batching, adapters, sampling, memory).
target_sources(forja_lib PRIVATE
  src/infer/pool.c src/infer/engine.c src/infer/request.c src/infer/sample.c
  src/infer/text.c)
