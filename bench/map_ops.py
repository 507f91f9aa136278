"""Map operations per second from Python (pyxdp.kernel) versus C (libbpf).

Run as root: ``python bench/map_ops.py [--entries N]``.  For a hash map (u32 -> u64) and an
LPM trie (IPv4 /32 keys -> u64), with N entries (default 1,000,000):

* single update / single lookup: one bpf() call per element, typed API (``m[k] = v``);
* batch update / lookup / delete: BPF_MAP_{UPDATE,LOOKUP,DELETE}_BATCH, typed API
  (``update_batch(pairs)``, ``dump()``, ``delete_batch(keys)``) including the encoding of
  Python values, and the raw API on ready blobs (``*_raw``).

The C reference ``bench/map_ops_ref.c`` does the same through libbpf (compiled here with
``cc -O2 ... -lbpf``).  Results: nanoseconds per element and the pyxdp/C ratio, written to
``bench/results/map_ops.json`` and ``bench/results/map_ops.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pyxdp.abi import MapType
from pyxdp.kernel import Map
from pyxdp.maps import MapSpec

HERE = Path(__file__).resolve().parent
CHUNK = 1 << 16


def lpm_key(i: int) -> bytes:
    return (32).to_bytes(4, "little") + (0x0A000000 + i).to_bytes(4, "big")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_python(kind: str, n: int, repeat: int) -> dict[str, float]:
    mtype = MapType.LPM_TRIE if kind == "lpm" else MapType.HASH
    spec = MapSpec("bench", mtype, 8 if kind == "lpm" else 4, 8, n)
    keys: list = [lpm_key(i) for i in range(n)] if kind == "lpm" else list(range(n))
    values = list(range(n))
    pairs = list(zip(keys, values))
    res: dict[str, float] = {}

    def best(op: str, seconds: float) -> None:
        res[op] = min(res.get(op, seconds), seconds)

    with Map.create(spec) as m:
        def single_update() -> None:
            for k, v in pairs:
                m[k] = v

        def single_lookup() -> None:
            total = 0
            for k in keys:
                total += m[k]
            assert total == n * (n - 1) // 2

        best("update", timed(single_update))
        best("lookup", timed(single_lookup))

    for _ in range(repeat):
        for op, seconds in batch_round(spec, keys, values, pairs).items():
            best(op, seconds)
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


def bench_c(kind: str, n: int, exe: str, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` runs per operation (single operations: the first run's figure,
    as on the Python side, where they run once)."""
    runs = []
    for _ in range(repeat):
        out = subprocess.run([exe, kind, str(n), str(CHUNK)], check=True,
                             capture_output=True, text=True).stdout
        data = json.loads(out)
        data.pop("check")
        runs.append(data)
    return {op: (runs[0][op] if op in ("update", "lookup") else min(r[op] for r in runs))
            for op in runs[0]}


def build_c() -> str:
    exe = os.path.join(tempfile.mkdtemp(prefix="pyxdp-bench-"), "map_ops_ref")
    subprocess.run(["cc", "-O2", str(HERE / "map_ops_ref.c"), "-lbpf", "-o", exe], check=True)
    return exe


def render_md(result: dict) -> str:
    lines = [
        "# Map operations: pyxdp (Python) vs libbpf (C)",
        "",
        f"{result['entries']:,} entries per map; ns per element (lower is better); "
        f"ratio = pyxdp / C.  Kernel {result['kernel']}, {result['machine']}, "
        f"Python {result['python']}.  Batch chunk for lookup: {CHUNK}.  Batch figures: best "
        f"of {result['repeat']} runs (fresh map each); single ops: one run.",
        "",
        "| map | operation | pyxdp typed ns | pyxdp raw ns | C ns | typed/C | raw/C |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("hash", "lpm"):
        py, c = result["pyxdp"][kind], result["c"][kind]
        for op in ("update", "lookup", "update_batch", "lookup_batch", "delete_batch"):
            raw = py.get(op + "_raw")
            raw_s = f"{raw:.0f}" if raw is not None else "-"
            raw_r = f"{raw / c[op]:.2f}" if raw is not None else "-"
            lines.append(f"| {kind} | {op} | {py[op]:.0f} | {raw_s} | {c[op]:.0f} | "
                         f"{py[op] / c[op]:.2f} | {raw_r} |")
    lines += ["", "Single operations pay one bpf() syscall per element on both sides; "
              "batch operations one per chunk.  `typed` includes converting Python ints / "
              "bytes keys to the kernel layout; `raw` starts from ready blobs.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="batch runs; the best counts")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (bpf())", file=sys.stderr)
        return 1
    exe = build_c()
    result: dict = {"entries": args.entries, "repeat": args.repeat, "kernel": platform.release(),
                    "machine": platform.machine(), "python": platform.python_version(),
                    "unit": "ns per element", "pyxdp": {}, "c": {}, "ratio": {}}
    t0 = time.perf_counter()
    for kind in ("hash", "lpm"):
        result["c"][kind] = bench_c(kind, args.entries, exe, args.repeat)
        result["pyxdp"][kind] = bench_python(kind, args.entries, args.repeat)
        result["ratio"][kind] = {op: round(result["pyxdp"][kind][op] / ns, 3)
                                 for op, ns in result["c"][kind].items()}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "map_ops.json"), "w") as f:
        json.dump(result, f, indent=2)
    md = render_md(result)
    with open(os.path.join(args.out, "map_ops.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"total {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
