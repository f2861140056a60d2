# src/tok: tokenizers (tiktoken encodings, tokenizer.json byte-level BPE).
target_sources(forja_lib PRIVATE
  src/tok/unicode_table.c src/tok/pretok.c src/tok/vocab.c src/tok/bpe.c
  src/tok/encode.c src/tok/tiktoken.c src/tok/nfc.c src/tok/nfc_table.c src/tok/hf.c)
