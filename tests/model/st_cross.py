#!/usr/bin/python3
"""st_cross.py - forja's safetensors reader and writer against an independent one.

The writer and reader here follow the format spec (docs/model-files.md) with json, struct
and numpy only; the fp32 -> bf16 / f16 rounding forja must match is torch's and numpy's.

    st_cross.py ST_TOOL WORKDIR

1. Python writes files (F32, F16 and BF16 with every one of their 65536 bit patterns, other
   dtypes, shuffled header order, unaligned data, metadata, a sharded folder); forja must read
   the same names, shapes, dtypes, raw bytes and exact fp32 values.
2. forja converts an F32 file (random bit patterns plus every rounding corner) to F32, BF16
   and F16; the files must pass this reader's checks (header padded with spaces to 8 bytes,
   compact JSON in the given order, buffer tiled exactly) and hold exactly torch's
   .to(torch.bfloat16) and numpy's / torch's float16 roundings.
3. A few hostile files from this writer must be refused with the file named.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import torch

TOOL, WORK = sys.argv[1], sys.argv[2]
failures = 0

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
              "I8": 1, "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1,
              "F8_E5M2": 1}


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def write_st(path, tensors, metadata=None, header_order=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes), laid out in this order.
    header_order: names in the order the header lists them (default: layout order)."""
    header, offset, blobs = {}, 0, []
    entries = {}
    for name, dtype, shape, raw in tensors:
        entries[name] = {"dtype": dtype, "shape": list(shape),
                         "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in header_order or [t[0] for t in tensors]:
        header[name] = entries[name]
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_st(path):
    """The reference implementation's checks, plus forja's writing conventions."""
    b = open(path, "rb").read()
    (n,) = struct.unpack("<Q", b[:8])
    assert n <= 100_000_000 and 8 + n <= len(b), "header length"
    raw_header = b[8:8 + n]
    assert n % 8 == 0, "header not padded to 8 bytes"
    text = raw_header.decode("utf-8")
    stripped = text.rstrip(" ")
    assert len(text) - len(stripped) < 8 and stripped.endswith("}"), "padding"
    pairs = json.loads(stripped, object_pairs_hook=lambda kv: kv)
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), "duplicate keys"
    header = dict(pairs)
    buf = b[8 + n:]
    spans, tensors = [], {}
    for name, info in pairs:
        if name == "__metadata__":
            continue
        info = dict(info)
        count = int(np.prod(info["shape"], dtype=np.int64))
        begin, end = info["data_offsets"]
        assert end - begin == count * DTYPE_SIZE[info["dtype"]], name
        spans.append((begin, end))
        tensors[name] = (info["dtype"], info["shape"], buf[begin:end])
    pos = 0
    for begin, end in sorted(spans):
        assert begin == pos, "hole or overlap"
        pos = end
    assert pos == len(buf), "trailing bytes"
    meta = dict(header["__metadata__"]) if "__metadata__" in header else None
    return stripped, keys, meta, tensors


def forja(*args, expect_ok=True):
    r = subprocess.run([TOOL, *args], capture_output=True, text=True)
    if expect_ok and r.returncode != 0:
        raise SystemExit("st_tool %s failed: %s" % (" ".join(args), r.stderr))
    return r


def dump(path):
    return json.loads(forja("dump", path).stdout)


def f32_of(t):
    return np.frombuffer(bytes.fromhex(t["f32"]), dtype=np.float32)


def bits32(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


# ------------------------------------------------------------------------------------------
# 1. forja reads what Python wrote

def test_read():
    rng = np.random.default_rng(7)
    specials = np.array([np.inf, -np.inf, np.nan, -0.0, 1e-40, -1e-45, 3.4028235e38, 1.0],
                        dtype=np.float32)
    shapes = [(), (0,), (3,), (2, 3), (2, 3, 4), (1, 1, 1, 1, 1, 1, 1, 5), (8,)]
    tensors, want = [], {}
    for i, shape in enumerate(shapes):
        a = rng.standard_normal(shape).astype(np.float32) if i < 6 else specials
        name = "t.%d.weight" % i
        tensors.append((name, "F32", shape, a.tobytes()))
        want[name] = a
    h = np.arange(65536, dtype=np.uint16)  # every f16 and bf16 bit pattern
    tensors.append(("all_f16", "F16", (256, 256), h.tobytes()))
    tensors.append(("all_bf16", "BF16", (65536,), h.tobytes()))
    other = [("i64", "I64", (3,), np.array([1, -2, 2**62], dtype=np.int64).tobytes()),
             ("u8", "U8", (5,), bytes(range(5))),
             ("mask", "BOOL", (2,), b"\x01\x00"),
             ("f64", "F64", (2,), np.array([1.5, -2.25]).tobytes())]
    tensors += other
    meta = {"format": "pt", "note": "ünïcode ✓ \"quoted\""}
    order = sorted(t[0] for t in tensors)[::-1]  # header order differs from layout order
    for pad in (True, False):  # unpadded: the data buffer starts unaligned
        path = os.path.join(WORK, "py_%s.safetensors" % ("pad" if pad else "nopad"))
        write_st(path, tensors, meta, order, pad=pad)
        d = dump(path)
        got = d["tensors"]
        check([t["name"] for t in got] == [t[0] for t in tensors], "file (offset) order")
        check(d["files"][0]["metadata"] == meta, "metadata")
        by = {t["name"]: t for t in got}
        for name, dtype, shape, raw in tensors:
            t = by[name]
            check(t["dtype"] == dtype and t["shape"] == list(shape), name + " dtype/shape")
            check(bytes.fromhex(t["raw"]) == raw, name + " raw bytes")
            check(t["numel"] == int(np.prod(shape, dtype=np.int64)), name + " numel")
            if dtype in ("F32", "F16", "BF16"):
                check(t["f32"] is not None, name + " converted")
            else:
                check(t["f32"] is None, name + " not converted")
        for name, a in want.items():
            check(np.array_equal(f32_of(by[name]).view(np.uint32), bits32(a).ravel()),
                  name + " fp32 bits")
        f16 = f32_of(by["all_f16"])
        check(np.array_equal(f16.view(np.uint32), bits32(h.view(np.float16).astype(np.float32))),
              "F16 -> fp32, every bit pattern, vs numpy")
        # torch quiets signalling NaNs (sets bit 22); numpy and forja keep every bit.
        tf = bits32(torch.from_numpy(h.view(np.float16)).float().numpy())
        fin = ~np.isnan(h.view(np.float16))
        check(np.array_equal(f16.view(np.uint32)[fin], tf[fin]),
              "F16 -> fp32, every non-NaN bit pattern, vs torch")
        bf = f32_of(by["all_bf16"])
        check(np.array_equal(bf.view(np.uint32), h.astype(np.uint32) << 16),
              "BF16 -> fp32, every bit pattern")
        tb = torch.from_numpy(h.view(np.int16)).view(torch.bfloat16).float().numpy()
        check(np.array_equal(bf.view(np.uint32), bits32(tb)), "BF16 -> fp32 vs torch")

    # A sharded folder, as transformers saves one.
    d = os.path.join(WORK, "sharded")
    os.makedirs(d, exist_ok=True)
    shards = {"model-00001-of-00003.safetensors": ["model.embed_tokens.weight"],
              "model-00002-of-00003.safetensors": ["model.layers.0.w", "model.layers.1.w"],
              "model-00003-of-00003.safetensors": ["lm_head.weight"]}
    weight_map, values = {}, {}
    for i, (shard, names) in enumerate(sorted(shards.items())):
        ts = []
        for name in names:
            a = rng.standard_normal((4, 3)).astype(np.float32)
            bf = (a.view(np.uint32) >> 16).astype(np.uint16)
            ts.append((name, "BF16", (4, 3), bf.tobytes()))
            values[name] = (i, bf.astype(np.uint32) << 16)
            weight_map[name] = shard
        write_st(os.path.join(d, shard), ts, {"format": "pt"})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 96}, "weight_map": dict(sorted(weight_map.items()))},
                  f, indent=2)
    got = dump(d)
    check(len(got["files"]) == 3 and len(got["tensors"]) == 4, "shards")
    for t in got["tensors"]:
        i, bits = values[t["name"]]
        check(t["file"] == i, t["name"] + " shard index")
        check(np.array_equal(f32_of(t).view(np.uint32), bits.ravel()), t["name"] + " values")


# ------------------------------------------------------------------------------------------
# 2. Python reads what forja wrote

def rounding_inputs():
    rng = np.random.default_rng(11)
    parts = [rng.integers(0, 2**32, size=300000, dtype=np.uint64).astype(np.uint32)]
    hi = rng.integers(0, 2**16, size=20000, dtype=np.uint64).astype(np.uint32) << 16
    for low in (0x7FFF, 0x8000, 0x8001, 0xFFFF):  # bf16 ties and neighbours
        parts.append(hi | low)
    exp = rng.integers(103, 143, size=20000, dtype=np.uint64).astype(np.uint32) << 23
    man = rng.integers(0, 2**10, size=20000, dtype=np.uint64).astype(np.uint32) << 13
    for low in (0x0FFF, 0x1000, 0x1001):  # f16 ties (normal and subnormal) and neighbours
        parts.append(exp | man | low)
        parts.append(0x80000000 | exp | man | low)
    edges = np.array([65504, 65519, 65519.996, 65520, 65536, 1e6, 2.0**-24, 2.0**-25,
                      3 * 2.0**-25, 5 * 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-14,
                      (2**10 - 0.5) * 2.0**-24, 3.3895314e38, 3.4028235e38, 1e-45, 0.0, -0.0,
                      np.inf, -np.inf, 1 + 2.0**-8, 1 + 3 * 2.0**-8, 1 + 2.0**-11,
                      1 + 3 * 2.0**-11], dtype=np.float32)
    parts.append(edges.view(np.uint32))
    parts.append((-edges).view(np.uint32))
    return np.concatenate(parts).view(np.float32)


def test_write():
    x = rounding_inputs()
    n = len(x)
    cut = [0, 5, 5 + 6 * 7, n // 3, n]  # a few tensors of different shapes
    src = os.path.join(WORK, "src.safetensors")
    tensors = [("a.weight", "F32", (5,), x[0:5].tobytes()),
               ("b.weight", "F32", (6, 7), x[5:47].tobytes()),
               ("empty", "F32", (0, 3), b""),
               ("scalar", "F32", (), x[47:48].tobytes()),
               ("ünï.weight", "F32", (n // 3 - 48,), x[48:n // 3].tobytes()),
               ("z.last", "F32", (n - n // 3,), x[n // 3:].tobytes())]
    del cut
    meta = {"format": "pt", "source": "st_cross"}
    write_st(src, tensors, meta)
    names = [t[0] for t in tensors]
    xt = torch.from_numpy(x.copy())
    with np.errstate(over="ignore"):
        np_f16 = x.astype(np.float16).view(np.uint16)
    want = {
        "F32": x.view(np.uint32),
        "BF16": xt.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16),
        "F16": xt.half().view(torch.int16).numpy().view(np.uint16),
    }
    nan = np.isnan(x)
    check(np.array_equal(want["F16"][~nan], np_f16[~nan]),
          "numpy and torch agree on float16 but for NaN payloads (reference sanity)")
    for dtype in ("F32", "BF16", "F16"):
        out = os.path.join(WORK, "forja_%s.safetensors" % dtype)
        forja("convert", src, out, dtype)
        check(not os.path.exists(out + ".tmp"), dtype + ": temp file left")
        try:
            text, keys, got_meta, got = read_st(out)
        except AssertionError as e:
            check(False, "%s: forja's file fails the reference checks: %s" % (dtype, e))
            continue
        check(keys == ["__metadata__"] + names, dtype + ": header order")
        check(got_meta == meta, dtype + ": metadata")
        # Byte for byte the compact JSON the reference implementation writes, in this order.
        header = {"__metadata__": meta}
        off = 0
        size = 4 if dtype == "F32" else 2
        for name, _, shape, raw in tensors:
            nb = len(raw) // 4 * size
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + nb]}
            off += nb
        check(text == json.dumps(header, separators=(",", ":"), ensure_ascii=False),
              dtype + ": header text")
        bits = np.concatenate([np.frombuffer(got[name][2], dtype=np.uint32 if dtype == "F32"
                                             else np.uint16) for name in names])
        w = want[dtype]
        if dtype == "F32":
            check(np.array_equal(bits, w), "F32 bits unchanged")
            continue
        nan = np.isnan(x)
        same = bits[~nan] == w[~nan]
        bad = np.flatnonzero(~same)
        before = failures
        check(same.all(), "%s: %d of %d values differ from the reference, e.g. %s" % (
            dtype, len(bad), n, [(hex(x[~nan].view(np.uint32)[i]), hex(bits[~nan][i]),
                                 hex(w[~nan][i])) for i in bad[:5]]))
        if dtype == "BF16":
            check((bits[nan] == 0x7FC0).all(), "BF16 NaN is 0x7FC0")
        else:
            check(np.array_equal(bits[nan], w[nan]), "F16 NaN: torch's sign | 0x7E00")
        if failures == before:
            print("%s: %d values, exact match with %s" % (
                dtype, n, "torch .to(torch.bfloat16)" if dtype == "BF16" else "torch .half()"))


# ------------------------------------------------------------------------------------------
# 3. refusals of files this writer makes hostile

def test_hostile():
    ok = ("a", "F32", (2,), b"\0" * 8)
    cases = []
    p = os.path.join(WORK, "overlap.safetensors")
    hdr = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
    open(p, "wb").write(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 12)
    cases.append((p, "share bytes"))
    p = os.path.join(WORK, "gap.safetensors")
    hdr = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}).encode()
    open(p, "wb").write(struct.pack("<Q", len(hdr)) + hdr + b"\0" * 16)
    cases.append((p, "belong to no tensor"))
    p = os.path.join(WORK, "truncated.safetensors")
    write_st(p, [ok, ("b", "BF16", (4,), b"\0" * 8)])
    data = open(p, "rb").read()
    open(p, "wb").write(data[:-3])
    cases.append((p, "run past"))
    p = os.path.join(WORK, "huge_header.safetensors")
    open(p, "wb").write(struct.pack("<Q", 10 * 10**9) + b"{}")
    cases.append((p, "absurd"))
    p = os.path.join(WORK, "bad_dtype.safetensors")
    write_st(p, [("a", "F17", (2,), b"\0" * 8)])
    cases.append((p, "unknown dtype"))
    for path, want in cases:
        r = forja("dump", path, expect_ok=False)
        check(r.returncode == 2 and path in r.stderr and want in r.stderr,
              "%s: expected a refusal with %r, got %d %r" % (path, want, r.returncode, r.stderr))


if __name__ == "__main__":
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    test_read()
    test_write()
    test_hostile()
    print("st_cross: %s" % ("ok" if failures == 0 else "%d failures" % failures))
    sys.exit(1 if failures else 0)
