"""The main job without root: the demo's XDP filter in the emulator."""

from __future__ import annotations

from pyxdp import demo, emu
from pyxdp.packets import build
from pyxdp.progs import COUNTERS, read_counters


def test_emulator_demo_drops_exactly_the_flood() -> None:
    verdicts = demo.run_emulator_demo(n=500, log=lambda _: None)
    assert verdicts == {"DROP": 450, "PASS": 50}


def test_filter_program_checks_prefix_boundaries_and_counts() -> None:
    cmap = emu.create_map(demo.counters_spec())
    prog = emu.load(demo.filter_program(), maps={COUNTERS: cmap})

    def verdict(src: str) -> int:
        frame = build.ethernet(build.ipv4(build.udp(b"x", dport=demo.SERVICE_PORT), src=src,
                                          dst="198.18.0.2"))
        return prog.run_xdp(frame).verdict

    assert verdict("198.19.0.0") == 1 and verdict("198.19.255.255") == 1  # DROP
    assert verdict("198.18.255.255") == 2 and verdict("198.20.0.0") == 2  # PASS
    assert prog.run_xdp(bytes(20)).verdict == 2  # too short: pass, never crash
    ipv6 = build.ethernet(build.ipv6(build.udp(b"x")))
    assert prog.run_xdp(ipv6).verdict == 2
    assert read_counters(cmap) == (2, 4)
