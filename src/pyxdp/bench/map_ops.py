"""Map operations per second from Python (pyxdp.kernel) versus C (libbpf).

Run as root: ``python -m pyxdp.bench.map_ops [--entries N] [--rounds R]``.  For a hash map
(u32 -> u64) and an LPM trie (IPv4 /32 keys -> u64), with N entries (default 1,000,000):

* single update / single lookup: one bpf() call per element, typed API (``m[k] = v``);
* batch update / lookup / delete: BPF_MAP_{UPDATE,LOOKUP,DELETE}_BATCH, typed API
  (``update_batch(pairs)``, ``dump()``, ``delete_batch(keys)``) including the encoding of
  Python values, and the raw API on ready blobs (``*_raw``).

The C reference ``c/map_ops_ref.c`` does the same through libbpf (compiled here with
``cc -O2 ... -lbpf``).  Per map kind, one round is one C process doing every operation and
one pyxdp pass doing the same on fresh maps, the two alternating (C pyxdp, pyxdp C, ...).
Results: nanoseconds per element, median and spread, and pyxdp/C, written to
``bench/results/map_ops.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pyxdp.abi import MapType
from pyxdp.bench import harness
from pyxdp.bench.harness import LOWER, Report, stderr_log
from pyxdp.kernel import Map
from pyxdp.maps import MapSpec

NAME = "map_ops"
C_DIR = Path(__file__).resolve().parent / "c"
CHUNK = 1 << 16
KINDS = ("hash", "lpm")
OPS = ("update", "lookup", "update_batch", "lookup_batch", "delete_batch")


def lpm_key(i: int) -> bytes:
    return (32).to_bytes(4, "little") + (0x0A000000 + i).to_bytes(4, "big")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def python_round(kind: str, n: int) -> dict[str, float]:
    """One pyxdp round on fresh maps: ns per element for every operation."""
    mtype = MapType.LPM_TRIE if kind == "lpm" else MapType.HASH
    spec = MapSpec("bench", mtype, 8 if kind == "lpm" else 4, 8, n)
    keys: list = [lpm_key(i) for i in range(n)] if kind == "lpm" else list(range(n))
    values = list(range(n))
    pairs = list(zip(keys, values))
    res: dict[str, float] = {}
    with Map.create(spec) as m:
        def single_update() -> None:
            for k, v in pairs:
                m[k] = v

        def single_lookup() -> None:
            total = 0
            for k in keys:
                total += m[k]
            assert total == n * (n - 1) // 2

        res["update"] = timed(single_update)
        res["lookup"] = timed(single_lookup)
    res.update(batch_round(spec, keys, values, pairs))
    return {k: v * 1e9 / n for k, v in res.items()}


def batch_round(spec: MapSpec, keys: list, values: list, pairs: list) -> dict[str, float]:
    """One timed round of batch operations on fresh maps: typed API, then raw blobs."""
    n = len(keys)
    res: dict[str, float] = {}
    with Map.create(spec) as m:
        res["update_batch"] = timed(lambda: m.update_batch(pairs))
        out: list = []
        res["lookup_batch"] = timed(lambda: out.extend(m.dump(chunk=CHUNK)))
        assert len(out) == n
        out.clear()
        res["delete_batch"] = timed(lambda: m.delete_batch(keys))
        assert m.get(keys[0]) is None
    with Map.create(spec) as m:
        kblob, vblob = m.encode_keys(keys), m.encode_values(values)
        res["update_batch_raw"] = timed(lambda: m.update_batch_raw(kblob, vblob))
        blobs: list = []
        res["lookup_batch_raw"] = timed(lambda: blobs.append(m.dump_raw(chunk=CHUNK)))
        assert len(blobs[0][0]) == len(kblob)
        res["delete_batch_raw"] = timed(lambda: m.delete_batch_raw(kblob))
    return res


def c_round(kind: str, n: int, exe: str) -> dict[str, float]:
    """One run of the C reference: ns per element for every operation."""
    out = subprocess.run([exe, kind, str(n), str(CHUNK)], check=True, capture_output=True,
                         text=True, timeout=600).stdout
    data = json.loads(out)
    data.pop("check")
    return {k: float(v) for k, v in data.items()}


def build_c(workdir: str) -> str:
    exe = os.path.join(workdir, "map_ops_ref")
    subprocess.run(["cc", "-O2", str(C_DIR / "map_ops_ref.c"), "-lbpf", "-o", exe], check=True)
    return exe


def measure(entries: int, rounds: int, log: Callable[[str], None] = stderr_log) -> Report:
    r = Report(NAME, "Map operations: pyxdp (Python) vs libbpf (C)", rounds=rounds,
               params={"entries": entries, "lookup_chunk": CHUNK, "unit": "ns per element"})
    r.intro = (f"{entries:,} entries per map; ns per element (lower is better); ratio ="
               f" pyxdp / C.  Batch chunk for lookup: {CHUNK}.  Each round: one C process"
               " doing every operation on fresh maps and one pyxdp pass doing the same,"
               " alternating.")
    with tempfile.TemporaryDirectory(prefix="pyxdp-bench-") as work:
        exe = build_c(work)
        got = {}
        for kind in KINDS:
            log(f"map_ops {kind}: {rounds} alternating rounds (C, pyxdp)")
            got[kind] = harness.alternate_metrics(
                {"C": partial(c_round, kind, entries, exe),
                 "pyxdp": partial(python_round, kind, entries)}, rounds, log=log)
    rows = []
    for kind in KINDS:
        py, c = got[kind]["pyxdp"], got[kind]["C"]
        for op in OPS:
            r.side(f"{kind} {op} C", c[op], "ns", LOWER)
            r.side(f"{kind} {op} pyxdp typed", py[op], "ns", LOWER)
            typed = r.compare(f"{kind} {op}, typed", f"{kind} {op} pyxdp typed",
                              f"{kind} {op} C", a_label="pyxdp", b_label="C")
            raw_cell = raw_r = "-"
            if op + "_raw" in py:
                r.side(f"{kind} {op} pyxdp raw", py[op + "_raw"], "ns", LOWER)
                raw = r.compare(f"{kind} {op}, raw blobs", f"{kind} {op} pyxdp raw",
                                f"{kind} {op} C", a_label="pyxdp raw", b_label="C")
                raw_cell, raw_r = f"{raw.sa.median:.0f}", f"{raw.ratio:.2f}"
            rows.append([kind, op, f"{typed.sa.median:.0f}", raw_cell,
                         f"{typed.sb.median:.0f}", f"{typed.ratio:.2f}", raw_r])
    r.table("Medians at a glance", ["map", "operation", "pyxdp typed ns", "pyxdp raw ns",
                                    "C ns", "typed/C", "raw/C"], rows)
    r.notes += ["Single operations pay one bpf() syscall per element on both sides; batch"
                " operations one per chunk.  `typed` includes converting Python ints / bytes"
                " keys to the kernel layout; `raw` starts from ready blobs.",
                "The machine is a shared 2-vCPU VM (other jobs ran at the same time): read"
                " the spreads, not one number."]
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.map_ops",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    harness.add_arguments(ap)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    if os.geteuid() != 0:
        print("needs root (bpf())", file=sys.stderr)
        return 1
    return harness.finish(measure(args.entries, args.rounds), args)


if __name__ == "__main__":
    sys.exit(main())
