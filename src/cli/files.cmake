# src/cli: the forja command-line tool.
target_sources(forja PRIVATE src/cli/main.c src/cli/opts.c src/cli/cmd_tokens.c src/cli/cmd_tokenize.c
  src/cli/cmd_models.c src/cli/cmd_render.c src/cli/cmd_generate.c src/cli/cmd_chat.c
  src/cli/cmd_train.c src/cli/cmd_serve.c src/cli/cmd_keys.c)
