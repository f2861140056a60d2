# src/train: fine-tuning (data pipeline, packing, plan, AdamW, checkpoints, the run).
target_sources(forja_lib PRIVATE
  src/train/dataset.c src/train/pack.c src/train/hparams.c src/train/optim.c
  src/train/checkpoint.c src/train/loop.c)
