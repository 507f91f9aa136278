"""``@subprog``: real bpf-to-bpf calls (issue 11), in the kernel and the emulator.

A subprogram is compiled once per argument signature into ``.text`` and called, not
inlined: the object holds one copy of its code however many call sites there are, the
kernel's verifier accepts it (packet refs, map-value refs, ctx, integers), and the
results are what the inlined helper gives."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether

from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.elf import load_object
from pyxdp.errors import CompileError

TTL_SRC = """
from pyxdp.compiler.lang import *

hits = ArrayMap[u32, u64](max_entries=4)

@{deco}
def dec_ttl(ip, by):
    if ip.ttl <= by:
        return 0
    old = (ip.ttl << 8) | ip.protocol
    ip.ttl -= by
    ip.check = csum_replace2(ip.check, old, (ip.ttl << 8) | ip.protocol)
    return 1

@{deco}
def count(ctx, slot):
    v = hits.lookup(slot)
    if v:
        v.value += ctx.packet_len()
    return 0

@xdp
def prog(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip:
        return XDP_PASS
    count(ctx, 0)
    if dec_ttl(ip, 1) == 0:
        return XDP_DROP
    count(ctx, 1)
    if dec_ttl(ip, 2) == 0:
        return XDP_DROP
    count(ctx, 2)
    return XDP_TX
"""


def compiled(deco: str):  # type: ignore[no-untyped-def]
    if deco == "inline":
        return compile_module(TTL_SRC.replace("@{deco}\n", ""))
    return compile_module(TTL_SRC.replace("{deco}", deco))


def frame(ttl: int) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="198.18.0.1", dst="198.18.0.2", ttl=ttl) / UDP(sport=1, dport=2)
                 / (b"x" * 18))


def test_subprogs_live_once_in_text_and_are_called() -> None:
    obj = compiled("subprog")
    spec = load_object(obj.elf)
    (prog,) = spec.programs.values()
    calls = [i for i in prog.instructions if i.opcode == 0x85 and i.src == 1]   # pseudo calls
    assert len(calls) == 5                      # 3 x count, 2 x dec_ttl
    inlined = compiled("inline").spec.programs["prog"]
    # the inlined build repeats both bodies; the subprogram build holds each once
    assert len(prog.instructions) < len(inlined.instructions)


@pytest.mark.parametrize("ttl,verdict,counted", [(64, "TX", 3), (3, "DROP", 2),
                                                 (1, "DROP", 1)])
def test_subprogs_agree_with_inlined_helpers(backend: Backend, ttl: int, verdict: str,
                                             counted: int) -> None:
    pkt = frame(ttl)
    outs = {}
    for deco in ("subprog", "inline"):
        obj = compiled(deco)
        with backend.load(obj.spec) as coll:
            r = coll.programs["prog"].run_packet(pkt)
            hits = obj.typed_maps(coll)["hits"]
            outs[deco] = (r.verdict.name, r.packet, [hits[i] for i in range(4)])
    assert outs["subprog"] == outs["inline"]
    name, data, hits = outs["subprog"]
    assert name == verdict
    assert hits == [len(pkt)] * counted + [0] * (4 - counted)
    if verdict == "TX":
        ip = Ether(data)[IP]
        assert ip.ttl == ttl - 3
        want = ip.chksum
        del ip.chksum
        assert IP(bytes(ip)).chksum == want           # the incremental fix is right


def test_one_function_per_argument_signature(backend: Backend) -> None:
    src = """
from pyxdp.compiler.lang import *
out = ArrayMap[u32, u64](max_entries=4)

@subprog
def twice(x):
    return x + x

@xdp
def prog(ctx):
    a = u8(ctx.packet_len() + 136)   # 200 for a 64-byte frame, unknown to the compiler
    b = u64(ctx.packet_len()) << 40
    out.update(0, twice(a))          # u8 + u8 promotes, as in the inlined helper
    out.update(1, twice(b))
    out.update(2, twice(a))          # the u8 signature again: the same function
    return XDP_PASS
"""
    results = []
    for text in (src, src.replace("@subprog\n", "")):
        obj = compile_module(text)
        with backend.load(obj.spec) as coll:
            assert coll.programs["prog"].run_packet(bytes(64)).verdict.name == "PASS"
            out = obj.typed_maps(coll)["out"]
            results.append([out[0], out[1], out[2]])
    assert results[0] == results[1] == [400, 64 << 41, 400]
    insns = compile_module(src).spec.programs["prog"].instructions
    slots, n = [], 0
    for i in insns:                  # instruction slots: LD_IMM64 takes two
        slots.append(n)
        n += 2 if i.opcode == 0x18 else 1
    targets = {slots[k] + i.imm + 1 for k, i in enumerate(insns)
               if i.opcode == 0x85 and i.src == 1}
    assert len(targets) == 2                   # twice(u8) and twice(u64)


def test_icmp_echo_through_a_subprogram_keeps_its_checksum(backend: Backend) -> None:
    src = """
from pyxdp.compiler.lang import *

@subprog
def swap_ips(ip):
    ip.saddr, ip.daddr = ip.daddr, ip.saddr
    return 0

@xdp
def prog(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip or ip.protocol != IPPROTO_ICMP:
        return XDP_PASS
    icmp = c.parse(ICMP)
    if not icmp or icmp.type != 8:
        return XDP_PASS
    swap_ips(ip)
    eth.src, eth.dst = eth.dst, eth.src
    icmp.checksum = csum_replace2(icmp.checksum, 0x0800, 0x0000)
    icmp.type = 0
    return XDP_TX
"""
    pkt = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                / IP(src="198.18.0.1", dst="198.18.0.2") / ICMP(id=7, seq=1) / b"ping")
    with backend.load(compile_module(src).spec) as coll:
        r = coll.programs["prog"].run_packet(pkt)
    assert r.verdict.name == "TX"
    reply = Ether(r.packet)
    assert (reply[IP].src, reply[IP].dst, reply[ICMP].type) == ("198.18.0.2", "198.18.0.1", 0)
    want = reply[ICMP].chksum
    del reply[ICMP].chksum
    assert ICMP(bytes(reply[ICMP])).chksum == want


@pytest.mark.parametrize("body,message", [
    ("@subprog\ndef f(a, b, c, d, e):\n    return a\n", "5 arguments besides ctx"),
    ("@subprog\ndef f(a):\n    return a\n", "not ref[Ethernet@pkt]|returns an integer"),
    ("@subprog\ndef f(a):\n    return f(a)\n", "recursion"),
])
def test_subprog_refusals(body: str, message: str) -> None:
    call = {"5 arguments besides ctx": "f(1, 2, 3, 4, 5)",
            "recursion": "f(1)"}.get(message, "f(eth)")
    src = ("from pyxdp.compiler.lang import *\n" + body +
           "@xdp\ndef prog(ctx):\n    c = ctx.cursor()\n    eth = c.parse(Ethernet)\n"
           "    if not eth:\n        return XDP_PASS\n"
           f"    x = {call}\n    return XDP_PASS\n")
    with pytest.raises(CompileError, match=message):
        compile_module(src)


@pytest.mark.kernel
def test_a_tc_program_calls_a_subprogram_with_its_sk_buff() -> None:
    """The hidden ctx argument is a ``struct __sk_buff *`` in a tc program (the verifier
    matches the subprogram's BTF ctx type by name)."""
    from pyxdp.kernel import KernelBackend
    from pyxdp.packets import build

    src = """
from pyxdp.compiler.lang import *
seen = ArrayMap[u32, u64](max_entries=2)

@subprog
def note(ctx, slot):
    seen.update(slot, ctx.packet_len())
    return 0

@tc
def tcprog(ctx):
    note(ctx, 1)
    return TC_ACT_OK
"""
    obj = compile_module(src)
    udp = build.ethernet(build.ipv4(build.udp(b"x" * 10), src="198.18.0.9", dst="198.18.0.1"))
    with KernelBackend().load(obj.spec) as coll:
        assert coll.programs["tcprog"].run_packet(udp).retval == 0
        assert obj.typed_maps(coll)["seen"][1] == len(udp)
