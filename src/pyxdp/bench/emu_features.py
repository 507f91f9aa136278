"""Emulator cost of map-in-map lookups, ``bpf_for_each_map_elem`` and multi-buffer
frames, next to the kernel's ``BPF_PROG_TEST_RUN`` on the same objects and frames.

Cases (the committed test objects in ``tests/data/obj``, so this runs from a checkout):

* ``map_in_map.o``: ``outer[0]`` then ``inner[0]`` (two lookups, the first giving a map);
* ``for_each.o`` ``walk``: callbacks over an 8-element array and a 5-element hash map;
* ``frags_tail.o`` ``probe_frags`` on a 9000-byte frame (3520 linear bytes + 2 frags):
  ``bpf_xdp_get_buff_len`` twice, ``load_bytes`` and ``store_bytes`` across a frag.

Run: ``python -m pyxdp.bench.emu_features``; writes ``bench/results/emu_features.{json,md}``.
The kernel side needs root; without it only the emulator is measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyxdp.bench import harness
from pyxdp.bench.harness import LOWER, Report, alternate, stderr_log
from pyxdp.elf import load_object, set_variable
from pyxdp.spec import ObjectSpec

NAME = "emu_features"
OBJ = Path(__file__).resolve().parents[3] / "tests" / "data" / "obj"


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    obj: str
    prog: str
    frame: bytes
    fill: Callable[[Any], None]
    knobs: tuple[tuple[str, int], ...] = ()


def _fill_nothing(coll: Any) -> None:
    return None


def _fill_for_each(coll: Any) -> None:
    for i in range(8):
        coll.maps["arr"][i] = i
    for k in (3, 9, 12, 40, 41):
        coll.maps["hsh"][k] = k


CASES = (
    Case("map_in_map", "map-in-map lookup (outer, then inner)", "map_in_map.o",
         "outer_lookup", bytes(64), _fill_nothing),
    Case("for_each", "for_each_map_elem over 8 array + 5 hash elements", "for_each.o",
         "walk", bytes(64), _fill_for_each),
    Case("frags", "9000-byte multi-buffer frame: buff_len, load/store_bytes", "frags_tail.o",
         "probe_frags", bytes(9000), _fill_nothing, (("probe_off", 3516),)),
)


def _spec(case: Case) -> ObjectSpec:
    path = OBJ / case.obj
    if not path.exists():
        raise SystemExit(f"{path} is missing: run from a pyxdp checkout (make -C tests/data/c)")
    obj = load_object(path).only(case.prog)
    for name, value in case.knobs:
        set_variable(obj, name, value)
    return obj


def emu_sampler(case: Case, stack: ExitStack) -> Callable[[int], float]:
    from pyxdp.emu import EmuBackend

    coll = stack.enter_context(EmuBackend().load(_spec(case)))
    case.fill(coll)
    run = coll.programs[case.prog].run_xdp
    frame = case.frame

    def sample(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            run(frame)
        return (time.perf_counter() - t) / n * 1e9
    return sample


@contextmanager
def kernel_samplers() -> Iterator[tuple[dict[str, Callable[[int], float]], str]]:
    """Samplers of every case under BPF_PROG_TEST_RUN (ns per packet, the kernel's own
    average over ``repeat``), or none and why."""
    if os.geteuid() != 0:
        yield {}, "needs root"
        return
    try:
        from pyxdp import kernel
        from pyxdp.kernel import KernelBackend
    except Exception as e:  # optional side: report why it did not run
        yield {}, f"{type(e).__name__}: {e}"
        return
    with ExitStack() as stack:
        out: dict[str, Callable[[int], float]] = {}
        for case in CASES:
            coll = stack.enter_context(KernelBackend().load(_spec(case)))
            case.fill(coll)
            prog = coll.programs[case.prog]

            def sample(n: int, prog: Any = prog, frame: bytes = case.frame) -> float:
                return float(kernel.test_run(prog, frame, repeat=n).duration_ns)
            out[case.key] = sample
        yield out, "ok"


def measure(rounds: int, runs: int, log: Callable[[str], None] = stderr_log) -> Report:
    r = Report(NAME, "pyxdp.emu: map-in-map, for_each_map_elem and frags, next to the"
               " kernel's BPF_PROG_TEST_RUN", rounds=rounds,
               params={"runs_per_sample": runs})
    r.intro = (f"ns per packet: the emulator ({runs:,} `run_xdp` calls per sample) and the"
               f" kernel (BPF_PROG_TEST_RUN, repeat={runs:,}, the kernel's average) on the"
               " same object and frame, alternating rounds.")
    with ExitStack() as stack, kernel_samplers() as (ksamplers, status):
        sides: dict[str, Callable[[], float]] = {}
        for case in CASES:
            esample = emu_sampler(case, stack)
            sides[f"emu {case.key}"] = lambda s=esample: s(runs)   # type: ignore[misc]
            if case.key in ksamplers:
                sides[f"kernel {case.key}"] = (
                    lambda s=ksamplers[case.key]: s(runs))  # type: ignore[misc]
        log(f"{NAME}: {rounds} alternating rounds ({', '.join(sides)})")
        got = alternate(sides, rounds, warmup=1, log=log)
    for case in CASES:
        r.side(f"emu {case.key}", got[f"emu {case.key}"], "ns/packet", LOWER)
        if f"kernel {case.key}" in got:
            r.side(f"kernel {case.key}", got[f"kernel {case.key}"], "ns/packet", LOWER)
            r.compare(case.title, f"emu {case.key}", f"kernel {case.key}",
                      a_label="pyxdp.emu", b_label="kernel BPF_PROG_TEST_RUN")
    if not ksamplers:
        r.notes.append(f"Kernel BPF_PROG_TEST_RUN not measured: {status}.")
    r.extra = {"kernel_status": status}
    r.notes += [
        "A frame longer than 3520 bytes leaves the emulator's fast path: the frags are"
        " built per run and the program runs through the general entry (the same split the"
        " kernel's test run makes).",
        "One warm-up round is dropped.  The machine is a shared 2-vCPU VM: read the"
        " spreads, not one number.",
        "The kernel figure is BPF_PROG_TEST_RUN's own average over the repeat loop (no"
        " syscall cost per packet); the emulator's includes one Python call per packet."]
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.emu_features",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20_000, help="runs per sample")
    harness.add_arguments(ap, rounds=7)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    return harness.finish(measure(args.rounds, args.runs), args)


if __name__ == "__main__":
    sys.exit(main())
