#!/usr/bin/python3
"""saved_check.py CASE_DIR SAVED_DIR - checks the folders forja saved (test_arch SAVE_DIR)
against the case's own, which tests/reference/make_case.py wrote as transformers and PEFT
do:
  - model/config.json describes the same model (tests/reference's config_from_hf reads both
    to the same settings) and model.safetensors has exactly the case's tensor names and
    shapes, with bit-identical F32 values (F32 cases; others: equal to the widened values);
  - model-bf16/model.safetensors holds every tensor rounded to bfloat16 as torch rounds;
  - adapter/: PEFT's adapter_config.json keys, and adapter_model.safetensors with the case's
    key names, shapes and values.
The tensors are read with tests/reference/st.py (json + struct + numpy), not with forja.
"""
import json
import os
import sys

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "reference"))
import ref_models as rm  # noqa: E402
import st  # noqa: E402

case, saved = sys.argv[1], sys.argv[2]
fails = []


def same_tensors(a, b, what, exact=True):
    if sorted(a) != sorted(b):
        fails.append("%s: names differ: %s" % (what, sorted(set(a) ^ set(b))[:5]))
        return
    for k in a:
        x, y = np.asarray(a[k], dtype=np.float32), np.asarray(b[k], dtype=np.float32)
        if x.shape != y.shape:
            fails.append("%s: %s shape %s vs %s" % (what, k, x.shape, y.shape))
        elif exact and not np.array_equal(x.view(np.uint32), y.view(np.uint32)):
            fails.append("%s: %s values differ" % (what, k))


orig_cfg = json.load(open(os.path.join(case, "model", "config.json")))
new_cfg = json.load(open(os.path.join(saved, "model", "config.json")))
a, b = rm.config_from_hf(orig_cfg), rm.config_from_hf(new_cfg)
if vars(a) != vars(b):
    fails.append("config: %s vs %s" % (vars(a), vars(b)))
if new_cfg.get("architectures") != orig_cfg.get("architectures"):
    fails.append("architectures: %s vs %s" % (new_cfg.get("architectures"),
                                              orig_cfg.get("architectures")))

orig = st.read(os.path.join(case, "model", "model.safetensors"))[0]
new = st.read(os.path.join(saved, "model", "model.safetensors"))[0]
same_tensors(orig, new, "model.safetensors")

bf = st.read(os.path.join(saved, "model-bf16", "model.safetensors"))[0]
want_bf = {k: torch.tensor(np.asarray(v, dtype=np.float32)).to(torch.bfloat16).float().numpy()
           for k, v in orig.items()}
same_tensors(want_bf, bf, "model-bf16")

if os.path.isdir(os.path.join(case, "adapter")):
    oc = json.load(open(os.path.join(case, "adapter", "adapter_config.json")))
    nc = json.load(open(os.path.join(saved, "adapter", "adapter_config.json")))
    for key in ("peft_type", "task_type", "r", "lora_alpha", "fan_in_fan_out", "bias",
                "use_rslora", "use_dora"):
        if oc.get(key) != nc.get(key):
            fails.append("adapter_config %s: %r vs %r" % (key, nc.get(key), oc.get(key)))
    if sorted(oc["target_modules"]) != sorted(nc["target_modules"]):
        fails.append("target_modules %s vs %s" % (nc["target_modules"], oc["target_modules"]))
    same_tensors(st.read(os.path.join(case, "adapter", "adapter_model.safetensors"))[0],
                 st.read(os.path.join(saved, "adapter", "adapter_model.safetensors"))[0],
                 "adapter_model.safetensors")

for f in fails:
    print("FAIL", f)
print("saved folders %s" % ("differ" if fails else "match the case (names, shapes, values)"))
sys.exit(1 if fails else 0)
