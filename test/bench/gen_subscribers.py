#!/usr/bin/env python3
"""Writes a subscribers CSV (imsi,ki,opc) of N rows with random K/OPc.

  test/bench/gen_subscribers.py N OUT.csv [--prefix DIGITS]

IMSIs are the prefix (default 99998, MCC 999: test networks) followed by the
zero-padded row index, 15 digits in all. For the scale benchmark
(docs/BENCHMARKS.md, "A million subscribers").
"""
import argparse
import os

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("n", type=int)
p.add_argument("out")
p.add_argument("--prefix", default="99998")
a = p.parse_args()
width = 15 - len(a.prefix)
if a.n > 10**width:
    raise SystemExit("too many rows for the prefix")
with open(a.out, "w") as f:
    f.write("imsi,ki,opc\n")
    rnd = os.urandom(32 * 4096)
    used = 0
    rows = []
    for i in range(a.n):
        if used + 32 > len(rnd):
            rnd = os.urandom(32 * 4096)
            used = 0
        key = rnd[used:used + 32].hex()
        used += 32
        rows.append(f"{a.prefix}{i:0{width}d},{key[:32]},{key[32:]}\n")
        if len(rows) == 65536:
            f.writelines(rows)
            rows = []
    f.writelines(rows)
