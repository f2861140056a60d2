# src/data: the fine-tuning data format (JSONL conversations), checks and statistics.
target_sources(forja_lib PRIVATE src/data/reader.c src/data/example.c src/data/stats.c src/data/scan.c)
