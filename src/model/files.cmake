# src/model: model folders (config, safetensors, tokenizer), architectures, LoRA.
target_sources(forja_lib PRIVATE
  src/model/safetensors.c src/model/config.c
  src/model/layout.c src/model/weights.c src/model/lora.c src/model/block.c src/model/run.c
  src/model/batch.c src/model/kv.c src/model/folder.c src/model/builtin.c)
