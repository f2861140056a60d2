"""st.py - read and write safetensors files with json + struct + numpy only.

The format (https://github.com/huggingface/safetensors, "Format" section):

    8 bytes   N, little-endian unsigned 64-bit: the size of the header
    N bytes   a UTF-8 JSON object: {"<name>": {"dtype": "F32", "shape": [..],
              "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
              (offsets relative to the start of the byte buffer; the writer pads the
              header with spaces to a multiple of 8 bytes, as the Rust library does)
    rest      the byte buffer: every tensor's bytes, row-major, little-endian,
              contiguous and without gaps

Supported dtypes: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL. BF16 has no numpy dtype: it is
kept as its uint16 bit pattern. `to_bf16_bits` rounds float32 to bfloat16 the way torch's
`tensor.to(torch.bfloat16)` does (round to nearest, ties to even; every NaN becomes
0x7FC0, as c10's scalar conversion does), and `bf16_bits_to_f32` widens exactly.

read(path)  -> (dict name -> numpy array, metadata dict); BF16 tensors come back as
               float32 arrays (exact widening) unless raw_bf16=True (then uint16 bits).
write(path, tensors, metadata=None, dtypes=None)
            tensors: name -> numpy array; dtypes: optional name -> "BF16"/"F16"/... to
            convert on write (float arrays only). Without it the numpy dtype decides
            (float32 -> F32, float16 -> F16, int32 -> I32, ...).
"""
import json
import struct

import numpy as np

_NP = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "BF16": np.dtype("<u2"),  # bit pattern
}
_FROM_NP = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def to_bf16_bits(a):
    """float array -> uint16 bfloat16 bit patterns, round to nearest even (like torch)."""
    f = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    u = f.view(np.uint32).astype(np.uint64)
    lsb = (u >> 16) & 1
    r = ((u + 0x7FFF + lsb) >> 16).astype(np.uint16)
    nan = np.isnan(f)
    r[nan] = 0x7FC0  # c10::BFloat16's scalar round_to_nearest_even gives this NaN
    return r


def bf16_bits_to_f32(bits):
    b = np.ascontiguousarray(np.asarray(bits, dtype=np.uint16))
    return (b.astype(np.uint32) << 16).view(np.float32)


def round_to(a, dtype):
    """float32 values as they read back after storing them as dtype ("F32"/"BF16"/"F16")."""
    a = np.asarray(a, dtype=np.float32)
    if dtype == "F32":
        return a.copy()
    if dtype == "BF16":
        return bf16_bits_to_f32(to_bf16_bits(a))
    if dtype == "F16":
        with np.errstate(over="ignore"):  # beyond the F16 range is inf, as in torch
            return a.astype(np.float16).astype(np.float32)
    raise ValueError("round_to: unsupported dtype %r" % dtype)


def _encode(arr, dtype):
    if dtype == "BF16":
        if arr.dtype == np.uint16:
            bits = arr
        else:
            bits = to_bf16_bits(arr)
        return np.ascontiguousarray(bits, dtype="<u2").tobytes()
    return np.ascontiguousarray(arr, dtype=_NP[dtype]).tobytes()


def write(path, tensors, metadata=None, dtypes=None):
    dtypes = dtypes or {}
    names = sorted(tensors)
    header = {}
    chunks = []
    off = 0
    for name in names:
        if name == "__metadata__":
            raise ValueError("reserved tensor name __metadata__")
        arr = np.asarray(tensors[name])
        dt = dtypes.get(name) or _FROM_NP.get(arr.dtype)
        if dt is None:
            raise ValueError("%s: unsupported numpy dtype %s" % (name, arr.dtype))
        if dt in ("BF16", "F16") and arr.dtype.kind != "f" and not (
                dt == "BF16" and arr.dtype == np.uint16):
            raise ValueError("%s: %s needs a float array" % (name, dt))
        data = _encode(arr, dt)
        header[name] = {"dtype": dt, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [off, off + len(data)]}
        chunks.append(data)
        off += len(data)
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    pad = (-(8 + len(hjson))) % 8
    hjson += b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for c in chunks:
            f.write(c)


def read(path, raw_bf16=False):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError("%s: header size %d exceeds the file" % (path, n))
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    buf = memoryview(blob)[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    out = {}
    spans = []
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _NP:
            raise ValueError("%s: %s: unsupported dtype %s" % (path, name, dt))
        shape = tuple(int(s) for s in info["shape"])
        b, e = info["data_offsets"]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if e - b != count * _NP[dt].itemsize or e > len(buf) or b < 0:
            raise ValueError("%s: %s: bad data_offsets %r" % (path, name, [b, e]))
        spans.append((b, e))
        arr = np.frombuffer(buf[b:e], dtype=_NP[dt]).reshape(shape).copy()
        if dt == "BF16" and not raw_bf16:
            arr = bf16_bits_to_f32(arr).reshape(shape)
        out[name] = arr
    spans.sort()
    pos = 0
    for b, e in spans:
        if b != pos:
            raise ValueError("%s: byte buffer has a gap or overlap at %d" % (path, b))
        pos = e
    if pos != len(buf):
        raise ValueError("%s: byte buffer has %d trailing bytes" % (path, len(buf) - pos))
    return out, meta


def read_dtypes(path):
    """name -> dtype string, straight from the header."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    header.pop("__metadata__", None)
    return {k: v["dtype"] for k, v in header.items()}
