# tests/reference: the PyTorch oracle checks itself (self_check.py: safetensors codec vs
# torch, RoPE vs complex rotation, llama3 scaling vs transformers' formula, forward vs a
# loop-by-loop numpy model, gradcheck of every parameter and of LoRA). ~15 s.
add_test(NAME reference_self_check
         COMMAND ${FORJA_PYTHON3} -B ${CMAKE_CURRENT_LIST_DIR}/self_check.py)
set_tests_properties(reference_self_check PROPERTIES LABELS parity TIMEOUT 300)
