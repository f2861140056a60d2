# src/model: model folders (config, safetensors, tokenizer), architectures, LoRA.
target_sources(forja_lib PRIVATE)
