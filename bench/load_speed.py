"""How long loading a real BPF object takes: pyxdp versus ``bpftool prog loadall`` (libbpf).

Run as root: ``python bench/load_speed.py [--runs N]``.  For every xdp-tools object of the
``libxdp1`` package that bpftool can load, side by side in one run:

* **pyxdp in-process**: ``load_collection(load_object(path))`` in this (warm) interpreter,
  timed from parsing to the last program loaded; the collection is closed after each run.
* **pyxdp cold**: the same in a fresh ``python -c`` subprocess, wall time including
  interpreter start-up and imports: what a one-shot tool pays.
* **bpftool**: ``bpftool prog loadall OBJ DIR [type xdp] pinmaps DIR`` as a subprocess,
  wall time (process start, libbpf's feature probes, parse, load, pin); its pins are
  removed after every run, so each run creates fresh maps like pyxdp does.

Best and median of N runs each; the headline is the geometric mean over objects of
pyxdp/bpftool (median in-process vs median bpftool; the cold ratio is reported too).

Isolation: libbpf pins ``pinning = BY_NAME`` maps under /sys/fs/bpf, the directory a real
xdp-filter uses.  This script therefore moves itself into a private mount namespace and
mounts a *fresh bpffs instance* on /sys/fs/bpf there; bpftool inherits it, and nothing any
run pins is visible to (or can collide with) the rest of the system.  The instance
disappears with the process.

Results: ``bench/results/load_speed.json`` and ``bench/results/load_speed.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pyxdp.elf import load_object
from pyxdp.kernel import load_collection

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BPFFS = "/sys/fs/bpf"
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
XDP = 6

COLD = ("import sys, time; t = time.perf_counter();"
        " from pyxdp.elf import load_object; from pyxdp.kernel import load_collection;"
        " load_collection(load_object(sys.argv[1])).close()")


def libxdp_objects() -> list[str]:
    r = subprocess.run(["dpkg", "-L", "libxdp1"], capture_output=True, text=True)
    if r.returncode != 0:
        return []
    return sorted(p for p in r.stdout.split() if p.endswith(".o") and os.path.isfile(p))


def private_bpffs() -> None:
    """Enter a private mount namespace with a fresh bpffs on /sys/fs/bpf (see module doc)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)} (run as root)")
    # stop our mounts from propagating back to the host namespace
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"making / private: {os.strerror(err)}")
    if libc.mount(b"bpf", BPFFS.encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mounting a private bpffs on {BPFFS}: {os.strerror(err)}")


def clean_bpffs() -> None:
    """Remove every pin in the (private) bpffs: bpftool's programs and maps of the last run."""
    for name in os.listdir(BPFFS):
        if "." in name:       # the kernel's preloaded iterators (maps.debug): not pins
            continue
        path = os.path.join(BPFFS, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def bpftool_cmd(path: str) -> list[str]:
    spec = load_object(path)
    typ = ["type", "xdp"] if all(p.type == XDP for p in spec.programs.values()) else []
    return ["bpftool", "prog", "loadall", path, f"{BPFFS}/progs", *typ, "pinmaps", BPFFS]


def time_bpftool(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True)
    dt = time.perf_counter() - t0
    clean_bpffs()
    if r.returncode != 0:
        lines = r.stderr.decode(errors="replace").splitlines()
        why = [ln for ln in lines if ln.startswith(("libbpf:", "Error:"))] or lines or ["?"]
        raise RuntimeError(" | ".join(why[-2:]))
    return dt


def time_pyxdp(path: str) -> float:
    t0 = time.perf_counter()
    coll = load_collection(load_object(path))
    dt = time.perf_counter() - t0
    coll.close()
    return dt


def time_cold(path: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", COLD, path], check=True)
    return time.perf_counter() - t0


def stats(samples: list[float]) -> dict[str, float]:
    return {"best_ms": min(samples) * 1e3, "median_ms": statistics.median(samples) * 1e3}


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def bpftool_version() -> str:
    r = subprocess.run(["bpftool", "version"], capture_output=True, text=True)
    return " / ".join(ln.strip() for ln in r.stdout.splitlines()[:2])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="runs per object and method")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("load_speed: needs root (bpf() and a private bpffs)", file=sys.stderr)
        return 1
    objects = libxdp_objects()
    if not objects or shutil.which("bpftool") is None:
        print("load_speed: needs the libxdp1 objects and bpftool", file=sys.stderr)
        return 1
    private_bpffs()

    rows = []
    skipped = {}
    for path in objects:
        name = Path(path).name
        cmd = bpftool_cmd(path)
        try:
            time_bpftool(cmd)            # also a warm-up of the page cache
        except RuntimeError as e:
            skipped[name] = f"bpftool cannot load it: {e}"
            continue
        time_pyxdp(path)                 # warm-up: imports, vmlinux BTF if needed
        bt, py, cold = [], [], []
        for _ in range(args.runs):       # interleaved, so drift hits all three alike
            bt.append(time_bpftool(cmd))
            py.append(time_pyxdp(path))
            cold.append(time_cold(path))
        row = {"object": name, "bpftool": stats(bt), "pyxdp": stats(py),
               "pyxdp_cold": stats(cold)}
        row["ratio_median"] = row["pyxdp"]["median_ms"] / row["bpftool"]["median_ms"]
        row["ratio_best"] = row["pyxdp"]["best_ms"] / row["bpftool"]["best_ms"]
        row["cold_ratio_median"] = row["pyxdp_cold"]["median_ms"] / row["bpftool"]["median_ms"]
        rows.append(row)
        print(f"{name:26s} bpftool {row['bpftool']['median_ms']:7.2f} ms   pyxdp"
              f" {row['pyxdp']['median_ms']:7.2f} ms (x{row['ratio_median']:.2f})   cold"
              f" {row['pyxdp_cold']['median_ms']:7.1f} ms (x{row['cold_ratio_median']:.2f})",
              flush=True)
    clean_bpffs()

    summary = {
        "geomean_ratio_median": geomean([r["ratio_median"] for r in rows]),
        "geomean_ratio_best": geomean([r["ratio_best"] for r in rows]),
        "geomean_cold_ratio_median": geomean([r["cold_ratio_median"] for r in rows]),
    }
    print(f"geometric mean pyxdp/bpftool: median x{summary['geomean_ratio_median']:.2f},"
          f" best x{summary['geomean_ratio_best']:.2f}; cold (with interpreter start)"
          f" x{summary['geomean_cold_ratio_median']:.2f}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    if args.no_write:
        return 0
    env = {"kernel": platform.release(), "python": platform.python_version(),
           "bpftool": bpftool_version(), "cpus": os.cpu_count(), "runs": args.runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load_speed.json").write_text(json.dumps(
        {"env": env, "summary": summary, "objects": rows, "skipped": skipped}, indent=2) + "\n")
    lines = [
        "# Object load time: pyxdp vs bpftool (libbpf)", "",
        f"Linux {env['kernel']}, Python {env['python']}, {env['bpftool']},"
        f" {env['cpus']} CPUs; {args.runs} runs each, milliseconds.  *pyxdp* is"
        " `load_collection(load_object(path))` in a warm interpreter; *cold* is a fresh"
        " `python -c` including interpreter start-up; *bpftool* is the"
        " `bpftool prog loadall` process (which also pins).  Produced by"
        " `python bench/load_speed.py`.", "",
        "| object | bpftool median | pyxdp median | pyxdp/bpftool | pyxdp best |"
        " bpftool best | cold median | cold/bpftool |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['object']} | {r['bpftool']['median_ms']:.2f} | {r['pyxdp']['median_ms']:.2f}"
            f" | {r['ratio_median']:.2f} | {r['pyxdp']['best_ms']:.2f}"
            f" | {r['bpftool']['best_ms']:.2f} | {r['pyxdp_cold']['median_ms']:.1f}"
            f" | {r['cold_ratio_median']:.2f} |")
    lines += ["", f"**Geometric mean pyxdp/bpftool: {summary['geomean_ratio_median']:.2f}"
              f" (median), {summary['geomean_ratio_best']:.2f} (best); cold"
              f" {summary['geomean_cold_ratio_median']:.2f}.**"]
    if skipped:
        lines += ["", "Not measured: " + "; ".join(f"{n} ({w})" for n, w in skipped.items())]
    (RESULTS / "load_speed.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'load_speed.json'} and {RESULTS / 'load_speed.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
