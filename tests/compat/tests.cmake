# tests/compat: the API compatibility tests (Node.js 20, node:test). Each file starts its own
# `forja serve` on a fresh data dir and drives it through the official openai npm SDK
# (6.49.0, classes OpenAI and AzureOpenAI, unmodified); see tests/compat/lib.mjs.
# Included from tests/CMakeLists.txt, where CMAKE_CURRENT_SOURCE_DIR is tests/.
#
#   compat_lab_flow        the lab's AzureOpenAI flow (api-version 2024-05-01-preview): uploads,
#                          a gpt-4o job with seed 105 to success, results file, events,
#                          checkpoints, models; the OpenAI class on /v1 for files
#   compat_jobs_pagination jobs.list pagination (auto and `after`), metadata filter, cancel,
#                          pause/resume, refusals in the wrong state
#   compat_errors          auth, api-version, unknown ids, bad parameters, bad data (the job
#                          fails naming the line), 413, malformed JSON, headers, request log
#   compat_durability      kill -9 during an upload, with queued jobs, during training; resumed
#                          weights = uninterrupted weights; same seed = same weights
# FORJA_SHARED from the test's environment (CI sets it) wins over FORJA_SHARED_DEFAULT, the
# shared folder next to the source tree. FORJA_TRAIN_THREADS=1 (read by `forja serve`): the four
# files run in parallel on few cores, and one compute thread per training job halves the
# suite's time there (82 s against 146 s on 2 cores); the same value everywhere keeps the
# weight checksums comparable.
foreach(t lab_flow jobs_pagination errors durability chat)
  add_test(NAME compat_${t} COMMAND ${FORJA_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/compat/${t}.mjs)
  set_tests_properties(compat_${t} PROPERTIES LABELS compat TIMEOUT 1800
    ENVIRONMENT "FORJA_BIN=$<TARGET_FILE:forja>;FORJA_TEST_TMP=${FORJA_TEST_TMP}/compat_${t};FORJA_SHARED_DEFAULT=${PROJECT_SOURCE_DIR}/../shared;FORJA_TRAIN_THREADS=1")
endforeach()
