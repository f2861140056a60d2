# src/svc: the fine-tuning service: scheduler thread and worker processes.
target_sources(forja_lib PRIVATE src/svc/sched.c src/svc/worker.c)
