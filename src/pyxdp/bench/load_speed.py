"""How long loading a real BPF object takes: pyxdp versus ``bpftool prog loadall`` (libbpf).

Run as root: ``python -m pyxdp.bench.load_speed [--rounds N]``.  For every xdp-tools object of the
``libxdp1`` package that bpftool can load, side by side in one run:

* **pyxdp in-process**: ``load_collection(load_object(path))`` in this (warm) interpreter,
  timed from parsing to the last program loaded; the collection is closed after each run.
* **pyxdp cold**: the same in a fresh ``python -c`` subprocess, wall time including
  interpreter start-up and imports: what a one-shot tool pays.
* **CO-RE rows** (``tests/data/obj/core.o``, 5 relocations, and ``core_many.o``, 40):
  cold processes only, since each must read the kernel's BTF: bpftool, pyxdp with its BTF
  index cache warm, and pyxdp with the cache off; each pyxdp process times its own
  imports and its load, and the rest of its wall time is the interpreter's start-up.
* **bpftool**: ``bpftool prog loadall OBJ DIR [type xdp] pinmaps DIR`` as a subprocess,
  wall time (process start, libbpf's feature probes, parse, load, pin); its pins are
  removed after every run, so each run creates fresh maps like pyxdp does.

The three run in alternating rounds per object (bpftool, pyxdp, cold, then cold, pyxdp,
bpftool, ...; one warm-up round first), 20 rounds by default; per object the median and
spread of each, pyxdp/bpftool with its range, and whether the difference is within the
spread.  The headline is the geometric mean over objects of pyxdp/bpftool (median
in-process vs median bpftool; the cold ratio is reported too).

Isolation: libbpf pins ``pinning = BY_NAME`` maps under /sys/fs/bpf, the directory a real
xdp-filter uses.  This script therefore moves itself into a private mount namespace and
mounts a *fresh bpffs instance* on /sys/fs/bpf there; bpftool inherits it, and nothing any
run pins is visible to (or can collide with) the rest of the system.  The instance
disappears with the process.

Results: ``bench/results/load_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from pyxdp.abi import ProgType
from pyxdp.bench import harness
from pyxdp.bench.harness import LOWER, Report, alternate, stderr_log
from pyxdp.elf import load_object
from pyxdp.kernel import load_collection

NAME = "load_speed"
BPFFS = "/sys/fs/bpf"
CLONE_NEWNS = 0x00020000                 # unshare(2), mount(2): not BPF ABI
MS_REC, MS_PRIVATE = 0x4000, 1 << 18

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
    typ = ["type", "xdp"] if all(p.type == ProgType.XDP for p in spec.programs.values()) else []
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


def time_cold(path: str, env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", COLD, path], check=True,
                   env=None if env is None else {**os.environ, **env})
    return time.perf_counter() - t0


COLD_PARTS = ("import sys, time; t0 = time.perf_counter();"
              " from pyxdp.elf import load_object; from pyxdp.kernel import load_collection;"
              " t1 = time.perf_counter(); load_collection(load_object(sys.argv[1])).close();"
              " t2 = time.perf_counter(); print((t1 - t0) * 1e3, (t2 - t1) * 1e3)")


def time_cold_parts(path: str, env: dict[str, str]) -> dict[str, float]:
    """A fresh process: its wall time, and as it measures itself the imports and the load
    (object parsing, the kernel's BTF, CO-RE, map and program loads) apart."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", COLD_PARTS, path], check=True,
                       capture_output=True, text=True, env={**os.environ, **env})
    wall = (time.perf_counter() - t0) * 1e3
    imports, load = (float(x) for x in r.stdout.split())
    return {"wall": wall, "imports": imports, "load": load, "startup": wall - imports - load}


CORE_OBJECTS = ("core.o", "core_many.o")


def core_objects() -> list[str]:
    """The CO-RE test objects of the checkout (relocations against vmlinux BTF)."""
    root = Path(__file__).resolve().parents[3] / "tests" / "data" / "obj"
    return [str(root / n) for n in CORE_OBJECTS if (root / n).exists()]


def measure_core(r: Report, rounds: int, log: Callable[[str], None]) -> None:
    """CO-RE rows: cold processes only (each must read the kernel's BTF afresh): bpftool
    vs pyxdp with its BTF index cache warm and with the cache off; each pyxdp process
    reports its imports and its load apart, and the rest of its wall time is the
    interpreter's start-up."""
    import tempfile

    from pyxdp.elf import load_object as _lo

    objs = core_objects()
    if not objs:
        r.notes.append("CO-RE rows: tests/data/obj/core*.o not found (run from a checkout)")
        return
    cache = tempfile.mkdtemp(prefix="pyxdp-btf-cache-")
    rows = []
    try:
        for path in objs:
            name = Path(path).name
            relos = sum(len(p.core_relos) for p in _lo(path).programs.values())
            cmd = bpftool_cmd(path)
            time_bpftool(cmd)
            time_cold_parts(path, {"PYXDP_CACHE_DIR": cache})       # fills the cache
            def bpftool_wall(cmd: list[str] = cmd) -> dict[str, float]:
                return {"wall": ms(time_bpftool, cmd)}

            got = harness.alternate_metrics({
                "bpftool": bpftool_wall,
                "cached": partial(time_cold_parts, path, {"PYXDP_CACHE_DIR": cache}),
                "uncached": partial(time_cold_parts, path, {"PYXDP_CACHE_DIR": "off"})},
                rounds, warmup=1)
            bt = r.side(f"{name} CO-RE bpftool", got["bpftool"]["wall"], "ms", LOWER)
            sides = {}
            for side in ("cached", "uncached"):
                for metric in ("load", "imports", "startup", "wall"):
                    sides[side, metric] = r.side(f"{name} CO-RE pyxdp {side} {metric}",
                                                 got[side][metric], "ms", LOWER)
                r.compare(f"{name} (CO-RE, {relos} relocations), {side}: load in a cold"
                          " process vs the bpftool process",
                          f"{name} CO-RE pyxdp {side} load", f"{name} CO-RE bpftool",
                          a_label=f"pyxdp {side}", b_label="bpftool")

            def cell(x: Any) -> str:
                return f"{x.median:.1f} ({x.min:.1f}-{x.max:.1f})"

            c = sides["cached", "load"].median / bt.median
            u = sides["uncached", "load"].median / bt.median
            rows.append([f"{name} ({relos})", cell(bt), cell(sides["cached", "load"]),
                         f"{c:.2f}", cell(sides["uncached", "load"]), f"{u:.2f}",
                         f"{sides['cached', 'imports'].median:.0f}",
                         f"{sides['cached', 'startup'].median:.0f}"])
            log(f"{name:26s} CO-RE bpftool {bt.median:.1f} ms, pyxdp load cached"
                f" {sides['cached', 'load'].median:.1f} ms (x{c:.2f}), uncached"
                f" {sides['uncached', 'load'].median:.1f} ms (x{u:.2f})")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    r.table("CO-RE objects, cold processes (ms, median (min-max))",
            ["object (relocations)", "bpftool (whole process)",
             "pyxdp load, BTF index cached", "cached/bpftool", "pyxdp load, no cache",
             "no cache/bpftool", "pyxdp imports", "interpreter start-up"], rows,
            "Each pyxdp run is a fresh process (no BTF in memory); it times its own imports"
            " and its load (object, /sys/kernel/btf/vmlinux, CO-RE, maps, programs), and"
            " the rest of its wall time is the interpreter's start-up.  bpftool's column is"
            " its whole process.  Aim: load <= 3x bpftool.")


def ms(fn: Callable[[Any], float], arg: Any) -> float:
    return fn(arg) * 1e3


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def bpftool_version() -> str:
    r = subprocess.run(["bpftool", "version"], capture_output=True, text=True)
    return " / ".join(ln.strip() for ln in r.stdout.splitlines()[:2])


def measure(rounds: int, log: Callable[[str], None] = stderr_log) -> Report:
    objects = libxdp_objects()
    private_bpffs()
    r = Report(NAME, "Object load time: pyxdp vs bpftool (libbpf)", rounds=rounds,
               params={"bpftool": bpftool_version(), "objects": len(objects)}, compact=True)
    r.intro = ("Milliseconds per load of every xdp-tools object of the libxdp1 package."
               "  *pyxdp* is `load_collection(load_object(path))` in a warm interpreter;"
               " *cold* is a fresh `python -c` including interpreter start-up; *bpftool* is"
               " the `bpftool prog loadall` process (which also pins).  The three alternate"
               " per round.")
    rows, ratios, cold_ratios, best_ratios = [], [], [], []
    skipped = {}
    for path in objects:
        name = Path(path).name
        cmd = bpftool_cmd(path)
        try:
            time_bpftool(cmd)            # also a warm-up of the page cache
        except RuntimeError as e:
            skipped[name] = f"bpftool cannot load it: {e}"
            continue
        got = alternate({"bpftool": partial(ms, time_bpftool, cmd),
                         "pyxdp": partial(ms, time_pyxdp, path),
                         "pyxdp cold": partial(ms, time_cold, path)}, rounds, warmup=1)
        bt = r.side(f"{name} bpftool", got["bpftool"], "ms", LOWER)
        py = r.side(f"{name} pyxdp", got["pyxdp"], "ms", LOWER)
        cold = r.side(f"{name} pyxdp cold", got["pyxdp cold"], "ms", LOWER)
        c = r.compare(f"{name}, in-process", f"{name} pyxdp", f"{name} bpftool",
                      a_label="pyxdp", b_label="bpftool")
        cc = r.compare(f"{name}, cold", f"{name} pyxdp cold", f"{name} bpftool",
                       a_label="pyxdp cold", b_label="bpftool")
        ratios.append(c.ratio)
        cold_ratios.append(cc.ratio)
        best_ratios.append(py.min / bt.min)
        lo, hi = c.ratio_range
        rows.append([name, f"{bt.median:.2f} ({bt.min:.2f}-{bt.max:.2f})",
                     f"{py.median:.2f} ({py.min:.2f}-{py.max:.2f})",
                     f"{c.ratio:.2f} ({lo:.2f}-{hi:.2f})", c.short(),
                     f"{cold.median:.1f}", f"{cc.ratio:.2f}"])
        log(f"{name:26s} bpftool {bt.median:7.2f} ms   pyxdp {py.median:7.2f} ms"
            f" (x{c.ratio:.2f}, {c.short()})   cold {cold.median:7.1f} ms (x{cc.ratio:.2f})")
    clean_bpffs()
    measure_core(r, rounds, log)
    clean_bpffs()
    summary = {"geomean_ratio_median": geomean(ratios),
               "geomean_ratio_best": geomean(best_ratios),
               "geomean_cold_ratio_median": geomean(cold_ratios),
               "objects_pyxdp_faster": sum(c.winner == "pyxdp" for c in r.comparisons
                                           if c.name.endswith("in-process")),
               "objects_bpftool_faster": sum(c.winner == "bpftool" for c in r.comparisons
                                             if c.name.endswith("in-process")),
               "objects_within_spread": sum(c.winner is None for c in r.comparisons
                                            if c.name.endswith("in-process"))}
    r.extra = {"summary": summary, "skipped": skipped}
    r.table("Per object (ms, median (min-max))",
            ["object", "bpftool", "pyxdp", "pyxdp/bpftool (range)", "verdict", "cold median",
             "cold/bpftool"], rows,
            f"**Geometric mean pyxdp/bpftool: {summary['geomean_ratio_median']:.2f} (medians),"
            f" {summary['geomean_ratio_best']:.2f} (best runs); cold"
            f" {summary['geomean_cold_ratio_median']:.2f}.**  In-process: pyxdp faster on"
            f" {summary['objects_pyxdp_faster']} objects, bpftool on"
            f" {summary['objects_bpftool_faster']}, within the spread on"
            f" {summary['objects_within_spread']}.")
    r.notes.append("Pins live in a private bpffs of a private mount namespace (see the module"
                   " doc); nothing is visible outside the run.  The machine is a shared 2-vCPU"
                   " VM (other jobs ran at the same time): read the spreads.")
    if skipped:
        r.notes.append("Not measured: " + "; ".join(f"{n} ({w})" for n, w in skipped.items()))
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.load_speed",
                                 description=__doc__.split("\n\n")[0])
    harness.add_arguments(ap, rounds=20)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    if os.geteuid() != 0:
        print("load_speed: needs root (bpf() and a private bpffs)", file=sys.stderr)
        return 1
    if not libxdp_objects() or shutil.which("bpftool") is None:
        print("load_speed: needs the libxdp1 objects and bpftool", file=sys.stderr)
        return 1
    return harness.finish(measure(args.rounds), args)


if __name__ == "__main__":
    sys.exit(main())
