"""The example rule file loads into the kernel and judges packets as its comments say."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxdp.apps.filter import load_rules
from pyxdp.apps.filter.program import PROGRAM, load_generation
from pyxdp.apps.filter.tables import Sizes, assign_slots, compile_tables
from pyxdp.kernel import KernelBackend
from pyxdp.packets import build

pytestmark = pytest.mark.kernel
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "filter_rules.toml"
DROP, PASS = 1, 2


def frame(l4, src: str = "198.18.0.9") -> bytes:
    return build.ethernet(build.ipv4(l4, src=src, dst="198.18.0.2"))


def test_example_rules_in_the_kernel() -> None:
    rs = load_rules(EXAMPLE)
    sizes = Sizes(prefixes4=1024, prefixes6=1024, rules=64, lists=16, macs=16, patterns=16,
                  limits=16, pairs=64, sources=256, talkers=256)
    tables = compile_tables(rs, assign_slots(rs.rules, {}, sizes.rules), sizes)
    with load_generation(tables, sizes, KernelBackend()) as coll:
        prog = coll.programs[PROGRAM]

        def verdict(pkt: bytes) -> int:
            return prog.test_run(pkt).retval

        pad = bytes(30)
        assert verdict(frame(build.udp(pad), src="198.19.1.1")) == DROP          # bad-nets
        assert verdict(frame(build.udp(pad), src="198.18.10.5")) == PASS         # office
        assert verdict(frame(build.tcp(pad, dport=22, flags="FPU"))) == DROP     # xmas
        dns_any = bytes(12) + b"\x00\x00\xff" + bytes(20)
        assert verdict(frame(build.udp(dns_any, dport=53))) == DROP              # dns-any
        assert verdict(frame(build.udp(bytes(12) + b"\x00\x00\x01" + bytes(20),
                                       dport=53))) == PASS                        # type A
        assert verdict(frame(build.udp(b""))) == DROP                             # runts
        monlist = b"\x17\x00\x03\x2a" + bytes(40)
        assert verdict(frame(build.udp(monlist, dport=123))) == DROP             # expr
        assert verdict(frame(build.udp(b"\x17\x00\x03\x01" + bytes(40),
                                       dport=123))) == PASS                       # not 42
        assert verdict(frame(build.tcp(pad, dport=80, flags="S"))) == PASS       # within rate
