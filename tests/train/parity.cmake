# tests/train/parity.cmake - forja's optimizer steps (train_steps, tests/train/tests.cmake)
# against torch.optim.AdamW + LambdaLR + clip_grad_norm_ in float64 (optim_ref.py): loss, lr,
# grad_norm and every trainable element after each of 3-6 steps on 9 runs (full Llama / GPT-2
# / biases / tied, LoRA Llama and GPT-2, weight decay 0 and 0.01, warmup and decay,
# micro-batches of 1, 2 and B rows), then a self-test that deliberately wrong references are
# caught. ~1 minute.
add_test(NAME train_optim_parity
         COMMAND ${FORJA_PYTHON3} -B ${CMAKE_CURRENT_LIST_DIR}/optim_parity.py
                 $<TARGET_FILE:train_steps> ${FORJA_TEST_TMP}/optim_parity)
set_tests_properties(train_optim_parity PROPERTIES LABELS parity TIMEOUT 600)
