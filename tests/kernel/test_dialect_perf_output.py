"""``bpf_xdp_output`` through a ``PerfEventArray`` (issue 11): a sample of the program's
struct plus the first bytes of the frame, read back through per-CPU perf rings in the
kernel (perf_event_open + mmap) and through the emulator's model of them."""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.errors import CompileError

SRC = """
from pyxdp.compiler.lang import *

class Event(Struct):
    saddr: be32
    proto: u32

events = PerfEventArray()
rc = ArrayMap[u32, i64](max_entries=1)

@xdp
def prog(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip:
        return XDP_PASS
    ev = Event(saddr=ip.saddr, proto=ip.protocol)
    rc.update(0, events.output(ctx, ev, SAMPLE))
    return XDP_PASS
"""

PKT = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
            / IP(src="198.18.0.7", dst="198.18.0.9") / UDP(sport=5, dport=6) / (b"z" * 30))


def _run(backend: Backend, sample: int, subscribe: bool) -> tuple[int, list[bytes]]:
    obj = compile_module(SRC.replace("SAMPLE", str(sample)))
    with backend.load(obj.spec) as coll:
        events = coll.maps["events"]
        if subscribe:
            events.subscribe()
        for _ in range(3):
            assert coll.programs["prog"].run_packet(PKT).verdict.name == "PASS"
        got = obj.typed_maps(coll)["rc"][0]
        return got, events.drain() if subscribe else []


@pytest.mark.parametrize("sample", [0, 32, len(PKT)])
def test_samples_carry_the_struct_and_the_frame(backend: Backend, sample: int) -> None:
    rc, recs = _run(backend, sample, True)
    assert rc == 0
    assert len(recs) == 3
    want = bytes([198, 18, 0, 7]) + (17).to_bytes(4, "little") + PKT[:sample]
    for rec in recs:
        pad = (len(want) + 4 + 7) // 8 * 8 - 4 - len(want)   # the kernel's raw padding
        assert rec == want + bytes(pad)


def test_without_a_reader_the_helper_says_enoent(backend: Backend) -> None:
    rc, _ = _run(backend, 0, False)
    assert rc == -errno.ENOENT


def test_more_packet_bytes_than_the_frame_is_efault(backend: Backend) -> None:
    rc, recs = _run(backend, len(PKT) + 1, True)
    assert rc == -errno.EFAULT and recs == []


def test_drain_before_subscribe_is_refused(backend: Backend) -> None:
    obj = compile_module(SRC.replace("SAMPLE", "0"))
    with backend.load(obj.spec) as coll, pytest.raises(Exception, match="subscribe"):
        coll.maps["events"].drain()


def test_output_refusals() -> None:
    with pytest.raises(CompileError, match="at most 0xFFFFF"):
        compile_module(SRC.replace("SAMPLE", str(1 << 20)))
    with pytest.raises(CompileError, match="first argument is the program's ctx"):
        compile_module(SRC.replace("events.output(ctx, ev, SAMPLE)", "events.output(ev, ev)"))
