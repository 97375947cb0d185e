#!/usr/bin/env python3
"""PDU engine throughput: pure Python vs the Cython twin, side by side.

Figures (one core, time.perf_counter, about one second each):
  * BHS decode and BHS encode, PDUs per second;
  * framing a stream of 8 KiB Data-In PDUs (fed in 64 KiB chunks, as a socket
    would deliver them), without and with CRC32C header+data digests;
  * the cost of the header digest per PDU, ns (framing 48-byte NOP-Ins with
    and without HeaderDigest, the difference per PDU; the median of five alternating
    pairs, and the two NOP-In rates their medians).

Usage: bench/bench_pdu.py [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iscsictl.protocol import _bhs_py, _framing_py  # noqa: E402
from iscsictl.protocol import pdu as P  # noqa: E402

try:
    from iscsictl._fastpath import bhs as _bhs_c  # noqa: E402
    from iscsictl._fastpath import framing as _framing_c  # noqa: E402
except ImportError as exc:  # pragma: no cover
    _bhs_c = _framing_c = None
    _WHY = str(exc)

# the pure reader must use the pure BHS for a fair figure
_framing_py.decode_bhs = _bhs_py.decode_bhs
_framing_py.RawPDU = _bhs_py.RawPDU

CHUNK = 64 * 1024
PAIRS = 5  # header-digest measurements, alternating with and without


def rate(fn, units_per_call: int, seconds: float) -> float:
    """Units per second of ``fn`` over about ``seconds``."""
    n = 1
    while True:  # calibrate on ~1/10 of the budget
        t0 = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t0
        if dt >= seconds / 10:
            break
        n *= 2
    reps = max(1, int(n * seconds / dt))
    t0 = time.perf_counter()
    fn(reps)
    dt = time.perf_counter() - t0
    return reps * units_per_call / dt


def bench_decode(mod, buf, seconds):
    decode = mod.decode_bhs

    def run(n):
        for _ in range(n):
            decode(buf)
    return rate(run, 1, seconds)


def bench_encode(mod, buf, seconds):
    bhs = mod.decode_bhs(buf)
    encode = mod.encode_bhs

    def run(n):
        for _ in range(n):
            encode(bhs)
    return rate(run, 1, seconds)


def bench_framing(framing_mod, stream, count, seconds, hd, dd, max_dsl=8192):
    chunks = [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]
    Reader = framing_mod.PDUReader

    def run(n):
        for _ in range(n):
            r = Reader(header_digest=hd, data_digest=dd, max_data_segment_length=max_dsl)
            got = 0
            for c in chunks:
                r.feed(c)
                got += len(r.pdus())
            assert got == count, got
    return rate(run, count, seconds)


def digest_cost(fm, plain, digested, count, seconds, pairs=PAIRS):
    """(NOP-Ins/s without, with HeaderDigest, the digest's cost in ns a PDU): the medians of
    ``pairs`` alternating measurements sharing ``seconds`` a side, since one difference of
    two rates a few percent apart is mostly noise."""
    without, with_, cost = [], [], []
    for _ in range(pairs):
        a = bench_framing(fm, plain, count, seconds / pairs, False, False)
        b = bench_framing(fm, digested, count, seconds / pairs, True, False)
        without.append(a)
        with_.append(b)
        cost.append((1 / b - 1 / a) * 1e9)
    return statistics.median(without), statistics.median(with_), statistics.median(cost)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per figure (default 1)")
    args = ap.parse_args()
    s = args.seconds
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    if _bhs_c is None:
        print(f"Cython fast path not built ({_WHY}): pure Python figures only")

    bhs_buf = P.SCSIDataIn(itt=0x1234, datasn=5, buffer_offset=8192, statsn=9,
                           data=bytes(8192)).encode()[:48]
    n_pdus = 128
    data_in = [P.SCSIDataIn(itt=7, datasn=i, buffer_offset=i * 8192, data=bytes([i & 0xFF]) * 8192)
               for i in range(n_pdus)]
    plain = b"".join(p.encode() for p in data_in)
    digested = b"".join(p.encode(True, True) for p in data_in)
    n_nops = 4096
    nops = [P.NOPIn(itt=i, statsn=i) for i in range(n_nops)]
    nop_plain = b"".join(p.encode() for p in nops)
    nop_hd = b"".join(p.encode(header_digest=True) for p in nops)

    impls = [("python", _bhs_py, _framing_py)]
    if _bhs_c is not None:
        impls.append(("cython", _bhs_c, _framing_c))
    rows = []  # (label, unit, {impl: value})
    res = {}
    for name, bm, fm in impls:
        res[name] = {
            "BHS decode": bench_decode(bm, bhs_buf, s),
            "BHS encode": bench_encode(bm, bhs_buf, s),
            "frame 8 KiB Data-In, no digests": bench_framing(fm, plain, n_pdus, s, False, False),
            "frame 8 KiB Data-In, header+data digests":
                bench_framing(fm, digested, n_pdus, s, True, True),
        }
        nop0, nop1, cost = digest_cost(fm, nop_plain, nop_hd, n_nops, s)
        res[name]["frame NOP-In (48 B), no digest"] = nop0
        res[name]["frame NOP-In (48 B), header digest"] = nop1
        res[name]["header digest cost"] = cost
    labels = list(res["python"])
    for label in labels:
        unit = "ns/PDU" if label == "header digest cost" else "PDUs/s"
        rows.append((label, unit, {k: v[label] for k, v in res.items()}))

    def fmt(v, unit):
        return f"{v:,.0f}" if unit == "PDUs/s" else f"{v:,.0f}"

    names = [n for n, _, _ in impls]
    head = ["figure", "unit", *names] + (["cython/python"] if len(names) == 2 else [])
    table = []
    for label, unit, vals in rows:
        line = [label, unit, *(fmt(vals[n], unit) for n in names)]
        if len(names) == 2:
            ratio = (vals["cython"] / vals["python"] if unit == "PDUs/s"
                     else vals["python"] / vals["cython"] if vals["cython"] > 0 else float("nan"))
            line.append(f"{ratio:.1f}x")
        table.append(line)
    widths = [max(len(str(r[i])) for r in [head, *table]) for i in range(len(head))]
    print(f"PDU engine, one core, ~{s:g} s per figure "
          f"(Python {sys.version.split()[0]}; 8 KiB Data-In streams fed in {CHUNK // 1024} KiB chunks)")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in table:
        print("| " + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))
        ) + " |")
    if _bhs_c is not None:
        dec = res["cython"]["BHS decode"]
        ratio = dec / res["python"]["BHS decode"]
        ok = dec >= 2e6 and ratio >= 5
        print(f"goal (>= 2,000,000 BHS decodes/s and >= 5x pure): "
              f"{'met' if ok else 'NOT met'} ({dec:,.0f}/s, {ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
