# src/api: the HTTP API (OpenAI and Azure OpenAI shapes) over libmicrohttpd.
target_sources(forja_lib PRIVATE src/api/server.c src/api/reply.c src/api/route.c
  src/api/files.c src/api/jobs.c src/api/models.c src/api/metrics.c src/api/chat.c src/api/deploy.c)
