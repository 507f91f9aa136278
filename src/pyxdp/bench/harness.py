"""The shared harness of every pyxdp benchmark: alternating rounds, medians and spreads,
verdicts, and the results writer.  Pure Python; nothing here touches the kernel.

A comparison measures two (or more) *sides* in the same run, in alternating rounds:
:func:`alternate` calls every side once per round, in the order A B, then B A, then A B ...
(for more sides: forward, then reversed), so a slow drift of the machine hits every side
alike.  Each side's samples are summarised by :func:`summarize` (median, min-max, IQR);
:func:`compare` gives the ratio of the medians with its range and a verdict sentence that
says "within the spread" whenever the two min-max ranges overlap, i.e. whenever the
samples do not show which side is faster.

:class:`Report` collects the sides, comparisons, extra tables and notes of one benchmark
and writes ``<out>/<name>.json`` (every sample, the statistics, the machine) and
``<out>/<name>.md`` (a short table, the verdict sentences, the notes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyxdp.bench import options
from pyxdp.bench.options import DEFAULT_ROUNDS, MIN_ROUNDS

__all__ = ["DEFAULT_ROUNDS", "HIGHER", "LOWER", "MIN_ROUNDS", "Comparison", "Report", "Spread",
           "Table", "add_arguments", "alternate", "alternate_metrics", "check_rounds", "compare",
           "default_out", "finish", "fmt", "machine_info", "overlap", "ratio_range",
           "loadavg", "round_orders", "stderr_log", "summarize"]
HIGHER, LOWER = "higher", "lower"   # which way a side is better
_STARTED = time.monotonic()         # a benchmark imports the harness first: its start


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (how busy the shared machine was)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


_LOAD_AT_START = loadavg()


# -- statistics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """One side's samples and their summary."""

    samples: tuple[float, ...]
    median: float
    min: float
    max: float
    q1: float
    q3: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def n(self) -> int:
        return len(self.samples)

    def as_dict(self) -> dict[str, Any]:
        return {"samples": list(self.samples), "n": self.n, "median": self.median,
                "min": self.min, "max": self.max, "q1": self.q1, "q3": self.q3,
                "iqr": self.iqr}


def summarize(samples: Sequence[float]) -> Spread:
    """Median, min-max and quartiles (inclusive method) of at least one sample."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("summarize: no samples")
    if any(math.isnan(x) for x in xs):
        raise ValueError("summarize: a sample is NaN")
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return Spread(tuple(xs), statistics.median(xs), min(xs), max(xs), q1, q3)


def overlap(a: Spread, b: Spread) -> bool:
    """Do the min-max ranges of the two sides overlap (touching counts)?"""
    return a.min <= b.max and b.min <= a.max


def ratio_range(a: Spread, b: Spread) -> tuple[float, float]:
    """The range of a/b over every pair of samples: (min a / max b, max a / min b)."""
    lo = a.min / b.max if b.max else math.inf
    hi = a.max / b.min if b.min else math.inf
    return lo, hi


def fmt(x: float) -> str:
    """A number with about three significant digits, no exponent for everyday sizes."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(x)
    ax = abs(x)
    if ax >= 100 or ax == 0:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    if ax >= 0.01:
        return f"{x:.3f}"
    return f"{x:.3g}"


@dataclass(frozen=True)
class Comparison:
    """Side A against side B: ratio of medians (A/B), its range, and the verdict."""

    name: str
    a: str
    b: str
    unit: str
    better: str
    sa: Spread
    sb: Spread
    word: str = "faster"

    @property
    def ratio(self) -> float:
        return self.sa.median / self.sb.median if self.sb.median else math.inf

    @property
    def ratio_range(self) -> tuple[float, float]:
        return ratio_range(self.sa, self.sb)

    @property
    def within_spread(self) -> bool:
        return overlap(self.sa, self.sb)

    @property
    def iqr_separated(self) -> bool:
        """Do the interquartile ranges miss each other (even if the full ranges overlap)?"""
        return self.sa.q3 < self.sb.q1 or self.sb.q3 < self.sa.q1

    def _better_by_median(self) -> str:
        a_better = (self.sa.median > self.sb.median) == (self.better == HIGHER)
        return self.a if a_better else self.b

    def _median_factor(self) -> float:
        hi, lo = sorted((self.sa.median, self.sb.median), reverse=True)
        return hi / lo if lo else math.inf

    @property
    def winner(self) -> str | None:
        """The better side's label, or None when the difference is within the spread."""
        return None if self.within_spread else self._better_by_median()

    @property
    def factor(self) -> float:
        """How many times better the winner is (>= 1; 1.0 when within the spread)."""
        return 1.0 if self.winner is None else self._median_factor()

    def short(self) -> str:
        if self.winner is None:
            return "within the spread" + (" (IQRs apart)" if self.iqr_separated else "")
        return f"{self.winner} {_by(self.factor)} {self.word}"

    def verdict(self) -> str:
        a, b = self.sa, self.sb
        meds = (f"{self.a} {fmt(a.median)} vs {self.b} {fmt(b.median)} {self.unit},"
                f" median of {a.n} and {b.n}")
        if self.winner is None:
            diff = abs(a.median - b.median) / min(abs(a.median), abs(b.median)) * 100 \
                if min(abs(a.median), abs(b.median)) else 0.0
            said = (f"{self.name}: {meds}; the {diff:.1f}% difference is within the spread"
                    f" ({self.a} {fmt(a.min)}-{fmt(a.max)}, {self.b} {fmt(b.min)}-"
                    f"{fmt(b.max)})")
            if self.iqr_separated:
                return (f"{said}, but the interquartile ranges do not overlap: "
                        f"{self._better_by_median()} looks {_by(self._median_factor())}"
                        f" {self.word}, not a finding until more rounds separate the"
                        " ranges.")
            return said + ": no finding."
        lo, hi = self.ratio_range
        return (f"{self.name}: {self.winner} is {_by(self.factor)} {self.word} ({meds};"
                f" ratio {fmt(self.ratio)}, range {fmt(lo)}-{fmt(hi)}; the ranges do not"
                " overlap).")

    def as_dict(self) -> dict[str, Any]:
        lo, hi = self.ratio_range
        return {"name": self.name, "a": self.a, "b": self.b, "unit": self.unit,
                "better": self.better, "median_a": self.sa.median, "median_b": self.sb.median,
                "ratio": self.ratio, "ratio_range": [lo, hi],
                "within_spread": self.within_spread, "iqr_separated": self.iqr_separated,
                "winner": self.winner,
                "factor": self.factor, "verdict": self.verdict()}


def _by(factor: float) -> str:
    if factor < 1.5:
        return f"{(factor - 1) * 100:.1f}%"
    return f"{factor:.2f}x" if factor < 10 else f"{factor:.1f}x"


def compare(name: str, a: str, a_samples: Sequence[float], b: str, b_samples: Sequence[float],
            unit: str = "", better: str = HIGHER, word: str = "faster") -> Comparison:
    """Compare the samples of side ``a`` with those of side ``b`` (see :class:`Comparison`)."""
    if better not in (HIGHER, LOWER):
        raise ValueError(f"better must be {HIGHER!r} or {LOWER!r}")
    return Comparison(name, a, b, unit, better, summarize(a_samples), summarize(b_samples),
                      word)


# -- sampling --------------------------------------------------------------------------------
def round_orders(sides: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of the sides in every round: forward, reversed, forward ... (A B, B A, ...)."""
    return [list(sides) if r % 2 == 0 else list(reversed(sides)) for r in range(rounds)]


def alternate(sides: Mapping[str, Callable[[], float]], rounds: int = DEFAULT_ROUNDS, *,
              warmup: int = 0, log: Callable[[str], None] | None = None
              ) -> dict[str, list[float]]:
    """Call every side once per round in alternating order; each call returns one sample.

    ``warmup`` untimed rounds come first (their samples are dropped).  Returns the samples
    per side, in round order."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r, order in enumerate(round_orders(names, rounds)):
        for name in order:
            out[name].append(float(sides[name]()))
        if log is not None:
            log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {fmt(out[n][-1])}"
                                                        for n in names))
    return out


def alternate_metrics(sides: Mapping[str, Callable[[], Mapping[str, float]]],
                      rounds: int = DEFAULT_ROUNDS, *, warmup: int = 0,
                      log: Callable[[str], None] | None = None
                      ) -> dict[str, dict[str, list[float]]]:
    """:func:`alternate` for sides that measure several things per call: each call returns
    ``{metric: value}``; the result is ``{side: {metric: samples}}``."""
    out: dict[str, dict[str, list[float]]] = {name: {} for name in sides}

    def wrap(name: str) -> Callable[[], float]:
        def call() -> float:
            got = sides[name]()
            if recording[0]:
                for metric, value in got.items():
                    out[name].setdefault(metric, []).append(float(value))
            return float(len(got))
        return call

    recording = [False]
    for _ in range(warmup):
        for name in sides:
            sides[name]()
    recording[0] = True
    alternate({name: wrap(name) for name in sides}, rounds, log=None)
    if log is not None:
        log(f"  {rounds} rounds done: " + ", ".join(sides))
    return out


# -- machine and results ---------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {"kernel": platform.release(), "machine": platform.machine(),
            "cpu_model": cpu_model(), "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "loadavg_at_start": _LOAD_AT_START, "loadavg_at_end": loadavg()}


def default_out() -> Path:
    """``bench/results`` of the source checkout this package runs from, else of the
    current directory (an installed package has no checkout)."""
    root = Path(__file__).resolve().parents[3]
    if (root / "pyproject.toml").is_file() and (root / "bench").is_dir():
        return root / "bench" / "results"
    return Path.cwd() / "bench" / "results"


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]
    text: str = ""

    def markdown(self) -> list[str]:
        lines = [f"## {self.title}", ""] if self.title else []
        if self.text:
            lines += [self.text, ""]
        lines += ["| " + " | ".join(self.header) + " |",
                  "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        return [*lines, ""]


@dataclass
class Report:
    """Everything one benchmark run found, ready for ``<name>.json`` and ``<name>.md``."""

    name: str
    title: str
    intro: str = ""
    rounds: int = DEFAULT_ROUNDS
    params: dict[str, Any] = field(default_factory=dict)
    sides: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=machine_info)
    compact: bool = False   # the benchmark's own table shows the comparisons: no generic one
    seconds: float | None = None   # the run's wall time; finish() fills it in when unset

    def side(self, key: str, samples: Sequence[float], unit: str,
             better: str = HIGHER) -> Spread:
        """Record one measured side (its samples) under ``key``; returns its summary."""
        s = summarize(samples)
        self.sides[key] = {"unit": unit, "better": better, **s.as_dict()}
        return s

    def compare(self, name: str, a: str, b: str, *, a_label: str | None = None,
                b_label: str | None = None, word: str = "faster") -> Comparison:
        """Compare two recorded sides (keys ``a`` and ``b``) and keep the comparison."""
        sa, sb = self.sides[a], self.sides[b]
        c = compare(name, a_label or a, sa["samples"], b_label or b, sb["samples"],
                    sa["unit"], sa["better"], word)
        self.comparisons.append(c)
        return c

    def add(self, c: Comparison) -> Comparison:
        self.comparisons.append(c)
        return c

    def table(self, title: str, header: list[str], rows: list[list[Any]],
              text: str = "") -> Table:
        t = Table(title, header, rows, text)
        self.tables.append(t)
        return t

    # -- output ------------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        return {"benchmark": self.name, "title": self.title, "machine": self.machine,
                "rounds": self.rounds, "seconds": self.seconds,
                "sampling": "alternating rounds (A B, B A, A B ...), median and spread"
                            " (min-max, IQR); within the spread = min-max ranges overlap",
                "params": self.params, "sides": self.sides,
                "comparisons": [c.as_dict() for c in self.comparisons],
                "tables": [{"title": t.title, "header": t.header,
                            "rows": [[_plain(c) for c in r] for r in t.rows]}
                           for t in self.tables],
                "extra": self.extra, "notes": self.notes}

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, default=_plain) + "\n"

    def markdown(self) -> str:
        m = self.machine
        took = f", run took {self.seconds:.0f} s" if self.seconds is not None else ""
        la, lb = m.get("loadavg_at_start"), m.get("loadavg_at_end")
        if la and lb:
            took += f" (1-min load average {la[0]:.2f} at start, {lb[0]:.2f} at end)"
        lines = [f"# {self.title}", ""]
        if self.intro:
            lines += [self.intro, ""]
        lines += [f"Linux {m['kernel']}, {m['cpu_model']}, {m['nproc']} CPUs, Python"
                  f" {m['python']}; {m['date']}{took}.  {self.rounds} alternating rounds per"
                  " comparison (order reversed every round); median (min-max).  *Within the"
                  " spread*: the two sides' ranges overlap, so the run shows no difference.",
                  ""]
        if self.comparisons and not self.compact:
            lines += ["| comparison | A | B | A/B (range) | verdict |", "|---|---|---|---|---|"]
            for c in self.comparisons:
                lo, hi = c.ratio_range
                lines.append(f"| {c.name} | {c.a}: {_cell(c.sa, c.unit)} |"
                             f" {c.b}: {_cell(c.sb, c.unit)} |"
                             f" {fmt(c.ratio)} ({fmt(lo)}-{fmt(hi)}) | {c.short()} |")
            lines.append("")
        for t in self.tables:
            lines += t.markdown()
        if self.comparisons:
            lines += ["Verdicts:", ""]
            lines += [f"- {c.verdict()}" for c in self.comparisons]
            lines.append("")
        if self.notes:
            lines += ["Notes:", ""]
            lines += [f"- {n}" for n in self.notes]
            lines.append("")
        return "\n".join(lines)

    def write(self, out: str | Path) -> list[Path]:
        """Write ``<out>/<name>.json`` and ``<out>/<name>.md``; returns the paths."""
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        paths = [d / f"{self.name}.json", d / f"{self.name}.md"]
        paths[0].write_text(self.json())
        paths[1].write_text(self.markdown())
        return paths


def _cell(s: Spread, unit: str) -> str:
    return f"{fmt(s.median)} {unit} ({fmt(s.min)}-{fmt(s.max)})".replace("  ", " ")


def _plain(x: Any) -> Any:
    if isinstance(x, Spread):
        return x.as_dict()
    if isinstance(x, Path):
        return str(x)
    return x if isinstance(x, (int, float, str, bool, type(None), list, dict)) else str(x)


# -- command line ----------------------------------------------------------------------------
def add_arguments(ap: argparse.ArgumentParser, rounds: int = DEFAULT_ROUNDS) -> None:
    """The options every benchmark takes: --rounds, --out, --no-write, --note, --json."""
    options.common(ap, rounds)


def check_rounds(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.rounds < MIN_ROUNDS:
        ap.error(f"--rounds must be at least {MIN_ROUNDS} (medians and spreads need them)")


def finish(report: Report, args: argparse.Namespace, extra_files: Callable[[Path], list[Path]]
           | None = None) -> int:
    """Write the files (unless --no-write) and print the markdown, or the JSON (--json)."""
    paths: list[Path] = []
    if report.seconds is None:
        report.seconds = round(time.monotonic() - _STARTED, 1)
    report.notes += getattr(args, "note", None) or []
    report.machine["loadavg_at_end"] = loadavg()
    if not args.no_write:
        out = Path(args.out) if args.out else default_out()
        paths = report.write(out)
        if extra_files is not None:
            paths += extra_files(out)
    if args.json:
        sys.stdout.write(report.json())
        sys.stdout.flush()
        if paths:
            stderr_log("wrote " + ", ".join(str(p) for p in paths))
    else:
        print(report.markdown())
        if paths:
            print("wrote " + ", ".join(str(p) for p in paths))
    return 0
