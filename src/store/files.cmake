# src/store: the service's data directory (SQLite metadata, file contents).
target_sources(forja_lib PRIVATE src/store/db.c src/store/files.c src/store/jobs.c
  src/store/models.c src/store/keys.c src/store/tokens.c src/store/deployments.c)
