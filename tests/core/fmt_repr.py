#!/usr/bin/env python3
"""Checks fj_fmt_repr against Python's own repr(float), the format numpy's float64 also
prints (the lab's mean / median line). Usage: fmt_repr.py TEST_CORE_BINARY"""
import random
import struct
import subprocess
import sys

rng = random.Random(2026)
values = [0.0, -0.0, 1.0, 0.5, 52.1, 51.4, 17.6, 15.5, 49.0, 1e16, 9999999999999998.0,
          1e-4, 9.999999999999999e-05, 1e-5, 123456789.125, 1 / 3, 2 / 3, 5e-324,
          1.7976931348623157e308, float('inf'), float('-inf'), float('nan'), 0.1 + 0.2]
# Means and medians are ratios of whole numbers: many of those, then raw bit patterns.
values += [rng.randrange(0, 10**7) / rng.randrange(1, 10**5) for _ in range(20000)]
values += [rng.randrange(0, 10**12) / 2 for _ in range(2000)]
values += [struct.unpack('<d', struct.pack('<Q', rng.getrandbits(64)))[0] for _ in range(20000)]
bits = '\n'.join('%016x' % struct.unpack('<Q', struct.pack('<d', v))[0] for v in values) + '\n'
out = subprocess.run([sys.argv[1], '--repr'], input=bits, capture_output=True, text=True,
                     check=True).stdout.splitlines()
bad = [(v, got) for v, got in zip(values, out) if repr(v) != got]
if len(out) != len(values) or bad:
    for v, got in bad[:10]:
        print(f'repr({v!r}) but fj_fmt_repr gave {got!r}')
    print(f'{len(bad)} of {len(values)} differ ({len(out)} lines back)')
    sys.exit(1)
print(f'fj_fmt_repr == repr on {len(values)} values')
