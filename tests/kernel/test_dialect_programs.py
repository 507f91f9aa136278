"""Dialect features the next apps build on (issue 11): map pinning declared in the
dialect, and ``@tc`` programs run in the kernel."""

from __future__ import annotations

import copy
import os
import secrets
import shutil

import pytest

from pyxdp.abi import LIBBPF_PIN_BY_NAME, ProgType
from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.packets import build

PINNED = '''
from pyxdp.compiler.lang import *
shared = ArrayMap[u32, u64](max_entries=8, pinning=PIN_BY_NAME)
mine = ArrayMap[u32, u64](max_entries=1)

@xdp
def count(ctx):
    shared.add(1, 1)
    mine.add(0, 1)
    return XDP_PASS
'''


def test_pinning_declared_in_the_dialect_shares_the_map(backend: Backend) -> None:
    obj = compile_module(PINNED)
    assert obj.spec.maps["shared"].pinning == LIBBPF_PIN_BY_NAME
    assert obj.spec.maps["mine"].pinning == 0
    if backend.name == "kernel":
        from pyxdp.kernel import ensure_bpffs

        pin = os.path.join(ensure_bpffs(), f"pyxdpd-{secrets.token_hex(4)}")
    else:
        pin = f"/emulated/pyxdpd-{secrets.token_hex(4)}"
    try:
        with backend.load(obj.spec, pin_path=pin) as a, \
                backend.load(copy.deepcopy(obj.spec), pin_path=pin) as b:
            ma, mb = obj.typed_maps(a), obj.typed_maps(b)
            a.programs["count"].run_packet(bytes(64))
            b.programs["count"].run_packet(bytes(64))
            assert ma["shared"][1] == mb["shared"][1] == 2     # one map for both loads
            assert ma["mine"][0] == mb["mine"][0] == 1         # one map each
        if backend.name == "kernel":
            assert os.path.exists(os.path.join(pin, "shared"))
            assert not os.path.exists(os.path.join(pin, "mine"))
    finally:
        if backend.name == "kernel":
            shutil.rmtree(pin, ignore_errors=True)


def test_a_bad_pinning_value_is_refused() -> None:
    from pyxdp.errors import CompileError

    with pytest.raises(CompileError, match="pinning=2: use PIN_BY_NAME"):
        compile_module(PINNED.replace("pinning=PIN_BY_NAME", "pinning=2"))


TC = '''
from pyxdp.compiler.lang import *
seen = ArrayMap[u32, u64](max_entries=2)

@tc
def tcprog(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return TC_ACT_OK
    ip = c.parse(IPv4)
    if not ip:
        return TC_ACT_OK
    seen.update(0, ip.saddr)
    seen.update(1, ctx.packet_len())
    if ip.protocol == IPPROTO_UDP:
        return TC_ACT_SHOT
    return TC_ACT_OK
'''


@pytest.mark.kernel
def test_tc_programs_compile_load_and_judge_in_the_kernel() -> None:
    from pyxdp.kernel import KernelBackend

    obj = compile_module(TC)
    spec = obj.spec.programs["tcprog"]
    assert spec.type == ProgType.SCHED_CLS and spec.section == "tc"
    udp = build.ethernet(build.ipv4(build.udp(b"x" * 10), src="198.18.0.9", dst="198.18.0.1"))
    tcp = build.ethernet(build.ipv4(build.tcp(b"", dport=80), src="198.18.0.9",
                                    dst="198.18.0.1"))
    with KernelBackend().load(obj.spec) as coll:
        seen = obj.typed_maps(coll)["seen"]
        prog = coll.programs["tcprog"]
        res = prog.run_packet(udp)
        assert res.retval == 2 and res.verdict == 2      # TC_ACT_SHOT, not "XDP_PASS"
        assert seen[0] == 0xC6120009 and seen[1] == len(udp)
        assert prog.run_packet(tcp).retval == 0           # TC_ACT_OK
        with pytest.raises(ValueError, match="XDP context"):
            prog.run_packet(udp, ingress_ifindex=1)


def test_the_emulator_says_it_runs_xdp_only() -> None:
    from pyxdp.emu import EmuBackend
    from pyxdp.errors import EmulatorError

    coll = EmuBackend().load(compile_module(TC).spec)
    with pytest.raises(EmulatorError, match="XDP programs only"):
        coll.programs["tcprog"].run_packet(bytes(64))


STAGES = '''
from pyxdp.compiler.lang import *
jump = ProgArray(4)
events = RingBuf[None, None](4096)

class Ev(Struct):
    n: u32
    proto: be16

@xdp
def entry(ctx):
    tail_call(ctx, jump, 1)
    return XDP_PASS

@xdp
def stage(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        return XDP_ABORTED
    e = Ev()
    e.n = ctx.packet_len()
    e.proto = eth.proto
    events.output(e)
    return XDP_DROP
'''


def test_tail_calls_and_ring_buffer_records(backend: Backend) -> None:
    """A prog array filled from Python, a tail call into it, and ring buffer records
    read back with ``drain()`` (kernel: mmap()ed ring, libbpf's consumer protocol)."""
    frame = bytes(12) + b"\x86\xdd" + bytes(50)
    obj = compile_module(STAGES)
    with backend.load(obj.spec) as coll:
        entry = coll.programs["entry"]
        assert entry.run_packet(frame).verdict.name == "PASS"      # empty slot: falls through
        coll.maps["jump"][1] = coll.programs["stage"]
        for _ in range(3):
            assert entry.run_packet(frame).verdict.name == "DROP"
        records = coll.maps["events"].drain(limit=2)
        assert records == [len(frame).to_bytes(4, "little") + b"\x86\xdd" + bytes(2)] * 2
        assert len(coll.maps["events"].drain()) == 1
        assert coll.maps["events"].drain() == []
