"""What a chain costs: per-packet ns of a chain of 1, 2 and 4 stages against the same
programs run alone, and of capture on against off.

Run as root: ``python -m pyxdp.bench.chain_speed [--rounds N] [--repeat N]``.  One
harness for every side: ``BPF_PROG_TEST_RUN`` with ``repeat`` (the kernel's own average
ns per run) on a 64-byte UDP frame; the programs are PASS programs, so a repeated run
sees the same frame every time.

* **alone x k**: the stage program (``stage_pass`` of tests/data/c/chain_stages.c: a map
  lookup and an atomic add) loaded on its own, and a bare ``return XDP_PASS`` measured the
  same way (the test run's own cost per run); the reference for a chain of k stages is
  ``bare + k x (alone - bare)``: the k programs' work and one test-run frame, as if they
  were one program.
* **chain k**: the chain's root running k rewritten copies of it (k tail calls: one from
  the root, k-1 between stages, and the end-of-chain fall-through).
* **capture on/off**: a 2-stage chain with the capture code (every packet written to a
  ring buffer, 64 bytes of it) against the same chain without; the ring is drained between
  samples so it never fills.

All sides alternate, round by round (order reversed every round); median and spread.
Results: ``bench/results/chain_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from pyxdp.bench import harness
from pyxdp.bench.harness import LOWER, Report, alternate, stderr_log

NAME = "chain_speed"
DEPTHS = (1, 2, 4)
STAGES_OBJ = Path(__file__).resolve().parents[3] / "tests" / "data" / "obj" / "chain_stages.o"


def frame() -> bytes:
    from pyxdp.packets.build import ethernet, ipv4, udp

    return ethernet(ipv4(udp(b"x" * 18, dport=9), src="198.18.0.1", dst="198.18.0.2"))


def ns_per_run(prog: Any, pkt: bytes, repeat: int, ring: Any = None) -> float:
    got = prog.test_run(pkt, repeat=repeat)
    if ring is not None:
        ring.drain()
    return float(got.duration_ns)


def measure(repeat: int, rounds: int, obj_path: Path) -> Report:
    from pyxdp.chain import CAPTURE_MAP, Capture, Stage, build, capture_map_spec
    from pyxdp.elf import load_object
    from pyxdp.kernel import KernelBackend

    be = KernelBackend()
    obj = load_object(str(obj_path))
    pkt = frame()
    r = Report(NAME, "Chain cost: stages by exit rewriting and tail calls, capture on/off",
               intro="Per-packet ns from BPF_PROG_TEST_RUN (repeat "
                     f"{repeat:,}) on a 64-byte UDP frame; lower is better.",
               rounds=rounds, params={"repeat": repeat, "object": str(obj_path)})
    opened: list[Any] = []
    try:
        alone = be.load(obj)
        opened.append(alone)
        from pyxdp.abi import XdpAction
        from pyxdp.asm.programs import xdp_verdict
        from pyxdp.spec import ObjectSpec

        bare_spec = xdp_verdict(XdpAction.PASS, name="bare_pass")
        bare = be.load(ObjectSpec(programs={bare_spec.name: bare_spec}))
        opened.append(bare)
        sides = {"alone": partial(ns_per_run, alone.programs["stage_pass"], pkt, repeat),
                 "bare": partial(ns_per_run, bare.programs["bare_pass"], pkt, repeat)}
        gens = {}
        for k in DEPTHS:
            st = [Stage(f"s{i}", obj, "stage_pass", priority=i) for i in range(k)]
            gens[k] = build(be, st)
            opened.append(gens[k])
            sides[f"chain{k}"] = partial(ns_per_run, gens[k].root_program, pkt, repeat)
        # the capture on/off pair: 2 stages, each packet captured (64 bytes)
        ring = be.create_map(capture_map_spec(1 << 24))
        opened.append(ring)
        st2 = [Stage(f"s{i}", obj, "stage_pass", priority=i) for i in range(2)]
        cap = build(be, st2, capture=Capture(CAPTURE_MAP, snaplen=64), ring=ring)
        opened.append(cap)
        # a sample of `repeat` records must fit the ring: 1 << 24 bytes / 96 bytes each
        cap_repeat = min(repeat, (1 << 24) // (8 + 24 + 64) // 2)
        sides["capture_off"] = partial(ns_per_run, gens[2].root_program, pkt, cap_repeat)
        sides["capture_on"] = partial(ns_per_run, cap.root_program, pkt, cap_repeat, ring)
        samples = alternate(sides, rounds, warmup=1, log=stderr_log)
    finally:
        for o in reversed(opened):
            o.close()
    for key, s in samples.items():
        r.side(key, s, "ns", LOWER)
    rows = []
    for k in DEPTHS:
        ref = [b + k * (a - b) for a, b in zip(samples["alone"], samples["bare"],
                                               strict=True)]
        r.side(f"alone_x{k}", ref, "ns", LOWER)
        c = r.compare(f"chain of {k} vs the {k} programs alone", f"chain{k}", f"alone_x{k}",
                      a_label=f"chain {k}", b_label=f"alone x{k}", word="faster")
        ch, al = r.sides[f"chain{k}"], r.sides[f"alone_x{k}"]
        rows.append([k, f"{ch['median']:.1f} ({ch['min']:.1f}-{ch['max']:.1f})",
                     f"{al['median']:.1f} ({al['min']:.1f}-{al['max']:.1f})",
                     f"{ch['median'] - al['median']:+.1f}", c.short()])
    r.table("Chain depth", ["stages", "chain ns", "programs alone ns (bare + k x work)",
                            "chain overhead ns", "verdict"], rows)
    c = r.compare("capture on vs off (2 stages)", "capture_on", "capture_off",
                  a_label="capture on", b_label="capture off", word="faster")
    on, off = r.sides["capture_on"], r.sides["capture_off"]
    r.table("Capture", ["chain of 2", "ns", "cost of capturing ns", "verdict"], [
        ["capture off (plain generation)", f"{off['median']:.1f} ({off['min']:.1f}-"
         f"{off['max']:.1f})", "", ""],
        ["capture on (every packet, 64 B)", f"{on['median']:.1f} ({on['min']:.1f}-"
         f"{on['max']:.1f})", f"{on['median'] - off['median']:+.1f}", c.short()]])
    r.compact = True
    r.notes += [
        "'alone' is bare + k x (program alone - bare), per round: the work of the k programs"
        " with the test run's own per-run cost counted once, as the chain pays it once;"
        f" bare return-PASS {r.sides['bare']['median']:.1f} ns, the stage program alone"
        f" {r.sides['alone']['median']:.1f} ns.",
        "Capture off runs the plain generation: the capture code is swapped in only while"
        " `pyxdp dump` runs, so off costs exactly nothing more than the chain.",
        f"Capture runs use repeat {cap_repeat:,} per sample so one sample's records fit"
        " the 16 MiB ring (drained after every sample).",
        "2 shared vCPUs: other work on the machine widens the spreads; read them."]
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.chain_speed",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200_000,
                    help="BPF_PROG_TEST_RUN repeat per sample")
    ap.add_argument("--object", type=Path, default=STAGES_OBJ,
                    help="chain_stages.o (tests/data/obj of a pyxdp checkout)")
    harness.add_arguments(ap)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    if os.geteuid() != 0:
        print("chain_speed: needs root (bpf())", file=sys.stderr)
        return 1
    if not args.object.exists():
        print(f"chain_speed: {args.object} not found (use --object)", file=sys.stderr)
        return 1
    return harness.finish(measure(args.repeat, args.rounds, args.object), args)


if __name__ == "__main__":
    sys.exit(main())
