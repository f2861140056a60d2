# src/chat: chat templates (a Jinja subset) and rendering conversations for training.
target_sources(forja_lib PRIVATE)
