"""How long a ``pyxdp`` command takes from exec to exit, side by side with bpftool.

Run as root: ``python bench/cli_start.py [--rounds 10] [--runs 5] [--before SRC]``.  Every
command is a fresh process, wall time measured around ``subprocess.run`` with output to
/dev/null:

* ``pyxdp --help``      vs ``bpftool --help``
* ``pyxdp status``      vs ``bpftool net show``   (which XDP programs run where)
* ``pyxdp prog list``   vs ``bpftool prog list``
* ``pyxdp map dump ID`` vs ``bpftool map dump id ID`` (a 16-entry hash map this script
  creates and removes)
* ``pyxdp load OBJ --pin DIR`` vs ``bpftool prog loadall OBJ DIR pinmaps DIR``
  (``tests/data/obj/global_data.o``: BTF, three global-data maps, one program; both pin the
  same names, which are removed after every run)

and Python's own floor, ``python -c pass``, with the same interpreter and environment (and
``python -S -c pass``, which skips ``site``: the difference is what ``.pth`` files cost).
pyxdp runs as ``python -m pyxdp`` from this checkout's ``src`` with a bytecode cache
(a fresh ``PYTHONPYCACHEPREFIX``, warmed once), as for an installed package; the same
commands are also measured with ``python -S`` (no ``site``: what pyxdp costs without this
machine's ``.pth`` files; the read-only commands need nothing from site-packages) and
without any bytecode cache (``PYTHONDONTWRITEBYTECODE=1``, a development tree).  ``--before SRC`` adds the same pyxdp commands from another tree (e.g.
``/work/main/src``) for a before/after comparison.

Rounds alternate the sides: in each round every command runs ``--runs`` times in a block,
and the order of the blocks is reversed every other round, so drift of a shared machine
hits all sides alike.  Reported per command: the median of all runs, the interquartile
range and min-max; per pair the ratio of medians, and whether the difference lies within
the spread (the two interquartile ranges overlap).

Results: ``bench/results/cli_start.json`` and ``bench/results/cli_start.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
OBJ = ROOT / "tests" / "data" / "obj" / "global_data.o"
BPFFS = "/sys/fs/bpf"
TARGET_MS = 100.0


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def summary(samples: list[float]) -> dict[str, float]:
    ms = [s * 1e3 for s in samples]
    p25, med, p75 = quartiles(ms)
    return {"median_ms": med, "p25_ms": p25, "p75_ms": p75, "min_ms": min(ms),
            "max_ms": max(ms), "n": len(ms)}


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether the interquartile ranges of ``a`` and ``b`` overlap."""
    return a["p25_ms"] <= b["p75_ms"] and b["p25_ms"] <= a["p75_ms"]


class Case:
    """One command line, with optional clean-up after every run (not timed)."""

    def __init__(self, key: str, label: str, argv: list[str], env: dict[str, str] | None,
                 after: Any = None) -> None:
        self.key, self.label, self.argv, self.env, self.after = key, label, argv, env, after
        self.samples: list[float] = []

    def once(self) -> float:
        t0 = time.perf_counter()
        r = subprocess.run(self.argv, env=self.env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        dt = time.perf_counter() - t0
        if self.after is not None:
            self.after()
        if r.returncode != 0:
            raise RuntimeError(f"{self.label} failed ({r.returncode}):"
                               f" {r.stderr.decode(errors='replace').strip()[-300:]}")
        return dt


def pyxdp_env(src: Path, cache: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["PYTHONPATH"] = str(src)
    if cache is None:     # pyxdp compiled from source every time; the stdlib's own
        env["PYTHONDONTWRITEBYTECODE"] = "1"        # __pycache__ still serves
    else:
        env["PYTHONPYCACHEPREFIX"] = cache
    return env


def git_rev(src: Path) -> str:
    r = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."],
                           capture_output=True, text=True).stdout.strip()
    return (r.stdout.strip() or "?") + ("+dirty" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5, help="runs per command and round")
    ap.add_argument("--before", type=Path, help="another pyxdp src tree to compare with")
    ap.add_argument("--before-label", help="what --before is (default: its git revision)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("cli_start: needs root (bpf(), pins)", file=sys.stderr)
        return 1
    if shutil.which("bpftool") is None:
        print("cli_start: needs bpftool", file=sys.stderr)
        return 1
    if args.rounds < 5:
        print("cli_start: at least 5 rounds", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT / "src"))
    from pyxdp.asm import assemble
    from pyxdp.kernel import Map, Program, ensure_bpffs
    from pyxdp.maps import MapSpec, MapType

    stale = [str(p) for p in (ROOT / "src").rglob("__pycache__")]
    if stale:         # would serve the "no .pyc" runs
        print(f"cli_start: remove the bytecode caches first: {' '.join(stale[:3])} ...",
              file=sys.stderr)
        return 1

    ensure_bpffs()
    py = sys.executable
    pin = f"{BPFFS}/pyxdp-clistart-{secrets.token_hex(4)}"
    cache = tempfile.mkdtemp(prefix="pyxdp-pyc-")

    def unpin() -> None:
        shutil.rmtree(pin, ignore_errors=True)

    # something to list and to dump, held for the whole run
    prog = Program.load(assemble("r0 = 2\nexit"), name="clistart_prog")
    hmap = Map.create(MapSpec("clistart_map", MapType.HASH, 4, 8, 16))
    for i in range(16):
        hmap[i] = i * 0x0101010101
    mid = str(hmap.id)
    try:
        commands = {
            "help": (["--help"], ["bpftool", "--help"], None),
            "status": (["status"], ["bpftool", "net", "show"], None),
            "prog list": (["prog", "list"], ["bpftool", "prog", "list"], None),
            "map dump": (["map", "dump", mid], ["bpftool", "map", "dump", "id", mid], None),
            "load": (["load", str(OBJ), "--pin", pin],
                     ["bpftool", "prog", "loadall", str(OBJ), pin, "pinmaps", pin], unpin),
        }
        # as the table shows them
        shown = {mid: "ID", str(OBJ): "OBJ", pin: "DIR"}
        # side -> (src tree, bytecode cache, interpreter flags); -S runs without site (and
        # so without site-packages: the read-only commands need nothing from there)
        trees = {"pyxdp": (ROOT / "src", cache, []),
                 "pyxdp-S": (ROOT / "src", cache, ["-S"]),
                 "pyxdp-nopyc": (ROOT / "src", None, [])}
        if args.before:
            trees["before"] = (args.before.resolve(), tempfile.mkdtemp(prefix="pyxdp-pyc-"),
                               [])
        cases: list[Case] = [
            Case("python -c pass", "python -c pass", [py, "-c", "pass"],
                 pyxdp_env(ROOT / "src", cache)),
            Case("python -S -c pass", "python -S -c pass", [py, "-S", "-c", "pass"],
                 pyxdp_env(ROOT / "src", cache)),
        ]
        for name, (argv, bt, after) in commands.items():
            for tree, (src, pyc, flags) in trees.items():
                if flags and name == "load":        # the ELF reader is in site-packages
                    continue
                cases.append(Case(f"{tree}:{name}", f"{tree} {' '.join(argv)}",
                                  [py, *flags, "-m", "pyxdp", *argv], pyxdp_env(src, pyc),
                                  after))
            cases.append(Case(f"bpftool:{name}", " ".join(bt), bt, None, after))
        for c in cases:              # warm-up: bytecode caches, page cache; checks rc
            c.once()
        for r in range(args.rounds):
            order = cases if r % 2 == 0 else cases[::-1]
            for c in order:
                c.samples += [c.once() for _ in range(args.runs)]
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    finally:
        prog.close()
        hmap.close()
        unpin()
        shutil.rmtree(cache, ignore_errors=True)

    stats = {c.key: summary(c.samples) for c in cases}
    floor = stats["python -c pass"]
    rows = []
    for name in commands:
        mine, bt = stats[f"pyxdp:{name}"], stats[f"bpftool:{name}"]
        row = {"command": name, "pyxdp": mine, "bpftool": bt,
               "pyxdp_argv": " ".join(["pyxdp", *(shown.get(a, a) for a in commands[name][0])]),
               "bpftool_argv": " ".join(shown.get(a, a) for a in commands[name][1]),
               "ratio": mine["median_ms"] / bt["median_ms"],
               "within_spread_of_bpftool": overlap(mine, bt),
               "above_floor_ms": mine["median_ms"] - floor["median_ms"],
               "within_spread_of_floor": overlap(mine, floor),
               "under_target": mine["median_ms"] < TARGET_MS,
               "nopyc": stats[f"pyxdp-nopyc:{name}"],
               "no_site": stats.get(f"pyxdp-S:{name}")}
        if args.before:
            row["before"] = stats[f"before:{name}"]
            row["within_spread_of_before"] = overlap(mine, stats[f"before:{name}"])
        rows.append(row)
        print(f"{name:10s} pyxdp {mine['median_ms']:7.1f} ms  bpftool {bt['median_ms']:6.1f} ms"
              f"  x{row['ratio']:.0f}  above python floor {row['above_floor_ms']:+.1f} ms")
    print(f"python -c pass {floor['median_ms']:.1f} ms,"
          f" python -S -c pass {stats['python -S -c pass']['median_ms']:.1f} ms")
    if args.no_write:
        return 0
    bt_version = subprocess.run(["bpftool", "version"], capture_output=True,
                                text=True).stdout.splitlines()
    env = {"kernel": platform.release(), "python": platform.python_version(),
           "interpreter": py, "bpftool": " / ".join(x.strip() for x in bt_version[:2]),
           "cpus": os.cpu_count(), "rounds": args.rounds, "runs_per_round": args.runs,
           "pyxdp_rev": git_rev(ROOT / "src"),
           "before": (f"{args.before} ({args.before_label or git_rev(args.before)})"
                      if args.before else None)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_start.json").write_text(json.dumps(
        {"env": env, "floor": floor, "floor_no_site": stats["python -S -c pass"],
         "commands": rows, "all": stats}, indent=2) + "\n")
    (RESULTS / "cli_start.md").write_text(markdown(env, floor, stats, rows) + "\n")
    print(f"wrote {RESULTS / 'cli_start.json'} and {RESULTS / 'cli_start.md'}")
    return 0


def fmt(s: dict[str, float]) -> str:
    return f"{s['median_ms']:.1f} ({s['p25_ms']:.1f}-{s['p75_ms']:.1f})"


def markdown(env: dict[str, Any], floor: dict[str, float], stats: dict[str, Any],
             rows: list[dict[str, Any]]) -> str:
    before = env["before"] is not None
    n = env["rounds"] * env["runs_per_round"]
    lines = [
        "# CLI start-up: pyxdp vs bpftool", "",
        f"Linux {env['kernel']}, Python {env['python']}, {env['bpftool']}, {env['cpus']} CPUs"
        f" (shared); pyxdp {env['pyxdp_rev']}.  Wall time of one process, exec to exit,"
        f" milliseconds: median (interquartile range) of {n} runs, {env['rounds']} alternating"
        f" rounds of {env['runs_per_round']}.  pyxdp runs as `python -m pyxdp` with a"
        " bytecode cache, as installed; *`-S`* is the same without `site` (no `.pth` files,"
        " no site-packages: the read-only commands need none); *no .pyc* is the same"
        " without any bytecode cache (a development tree with `PYTHONDONTWRITEBYTECODE=1`)."
        + (f"  *before* is {env['before']}." if before else "")
        + "  Produced by `python bench/cli_start.py`.", "",
        f"Python's own floor, `python -c pass`: **{fmt(floor)}**; with `-S` (no `site`,"
        f" so no `.pth` files): {fmt(stats['python -S -c pass'])}.", "",
        "| command | pyxdp | above floor | < 100 ms | bpftool | bpftool command | ratio |"
        " `-S` | no .pyc |" + (" before |" if before else ""),
        "|---|---:|---:|:-:|---:|---|---:|---:|---:|" + ("---:|" if before else ""),
    ]
    for r in rows:
        no_site = fmt(r["no_site"]) if r["no_site"] else "-"
        lines.append(
            f"| `{r['pyxdp_argv']}` | {fmt(r['pyxdp'])}"
            f" | {r['above_floor_ms']:+.1f} | {'yes' if r['under_target'] else 'no'}"
            f" | {fmt(r['bpftool'])} | `{r['bpftool_argv']}` | {r['ratio']:.0f}"
            f" | {no_site} | {r['nopyc']['median_ms']:.1f}"
            + (f" | {r['before']['median_ms']:.1f} |" if before else " |"))
    lines += ["", f"OBJ is `{OBJ.relative_to(ROOT)}` (BTF, three global-data maps, one"
              " program); DIR a fresh directory under /sys/fs/bpf, removed after every run"
              " (both tools pin the same names in it); ID a 16-entry hash map.  The"
              " installed `pyxdp` console script skips `-m`'s runpy.", ""]
    notes = []
    for r in rows:
        if r["within_spread_of_bpftool"]:
            notes.append(f"`{r['command']}`: the difference to bpftool is within the spread.")
        if r["within_spread_of_floor"]:
            notes.append(f"`{r['command']}`: the difference to `python -c pass`"
                         f" ({r['above_floor_ms']:+.1f} ms) is within the spread.")
        if before and r.get("within_spread_of_before"):
            notes.append(f"`{r['command']}`: the difference to *before* is within the"
                         " spread.")
    if not notes:
        notes.append("No difference in the table is within the spread (the interquartile"
                     " ranges of every compared pair are disjoint).")
    no_site = [r["no_site"]["median_ms"] for r in rows if r["no_site"]]
    site_ms = floor["median_ms"] - stats["python -S -c pass"]["median_ms"]
    notes.append(f"`site` takes {site_ms:.0f} ms of the floor on this machine (its `.pth`"
                 " files import more modules than Python itself needs); without `site`"
                 f" (`-S`) the read-only commands take {min(no_site):.0f}-{max(no_site):.0f}"
                 " ms: pyxdp then also imports the standard-library modules `site` had"
                 " loaded, so that column is close to what a machine without such `.pth`"
                 " files sees.")
    slow = [r["command"] for r in rows[:4] if not r["under_target"]]
    notes.append(("All four read-only commands start in under 100 ms." if not slow else
                  f"Over 100 ms: {', '.join(slow)}.")
                 + f"  Of each, {floor['median_ms']:.0f} ms is the interpreter's start"
                 " before any pyxdp code runs (`python -c pass`).")
    return "\n".join(lines + notes)


if __name__ == "__main__":
    sys.exit(main())
