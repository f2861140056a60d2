# src/core: errors, buffers, UTF-8, number formatting.
target_sources(forja_lib PRIVATE src/core/err.c src/core/buf.c src/core/utf8.c src/core/fmt.c src/core/file.c)
