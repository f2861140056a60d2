# src/chat: chat templates (a Jinja subset) and rendering conversations for training.
target_sources(forja_lib PRIVATE
  src/chat/lex.c src/chat/parse.c src/chat/value.c src/chat/eval.c src/chat/builtins.c
  src/chat/case.c src/chat/conversation.c)
