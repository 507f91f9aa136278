"""XDP context, packet adjustment and the helpers, through real programs."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest

from pyxdp import emu
from pyxdp.asm import assemble
from pyxdp.errors import EmulatorError
from pyxdp.isa import Instruction, PseudoSrc, XdpAction
from pyxdp.maps import MapSpec
from pyxdp.packets.build import ethernet, ipv4, udp
from pyxdp.spec import MapRef, MapType, ProgramSpec, ProgType

PKT = ethernet(ipv4(udp(b"hello", dport=53), src="10.0.0.1", dst="10.9.9.9"))


def xdp(text: str, **kw: object) -> emu.EmuProgram:
    return emu.load(assemble(text), **kw)  # type: ignore[arg-type]


def test_ctx_fields_give_packet_pointers_and_ids() -> None:
    prog = xdp("""
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r0 = r3
        r0 -= r2
        r4 = *(u32 *)(r1 + 12)
        r0 <<= 8
        r0 |= r4
        r4 = *(u32 *)(r1 + 16)
        r0 <<= 8
        r0 |= r4
        exit
    """)
    res = prog.run_xdp(PKT, ingress_ifindex=7, rx_queue_index=3)
    assert res.r0 == (len(PKT) << 16) | (7 << 8) | 3
    assert res.verdict == XdpAction.ABORTED      # out-of-range return codes abort


def test_read_past_data_end_faults_with_pc() -> None:
    prog = xdp("r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 1000)\nexit")
    with pytest.raises(EmulatorError) as ei:
        prog.run_xdp(PKT)
    assert ei.value.pc == 1


def test_ctx_is_read_only() -> None:
    with pytest.raises(EmulatorError):
        xdp("r2 = 0\n*(u32 *)(r1 + 0) = r2\nr0 = 2\nexit").run_xdp(PKT)


def test_packet_writes_show_in_output() -> None:
    prog = xdp("""
        r2 = *(u32 *)(r1 + 0)
        r3 = 0xff
        *(u8 *)(r2 + 0) = r3
        r0 = 3
        exit
    """)
    res = prog.run_xdp(PKT)
    assert res.verdict == XdpAction.TX
    assert res.packet == b"\xff" + PKT[1:]


def test_adjust_head_pushes_and_pops_bytes() -> None:
    prog = xdp("""
        r6 = r1
        r2 = -4
        call 44
        r2 = *(u32 *)(r6 + 0)
        r3 = *(u32 *)(r6 + 4)
        r4 = r2
        r4 += 4
        if r4 > r3 goto out
        r5 = 0xabcdef01
        *(u32 *)(r2 + 0) = r5
    out:
        r0 = 2
        exit
    """)
    res = prog.run_xdp(PKT)
    assert res.packet == bytes.fromhex("01efcdab") + PKT
    # popping more than the packet holds is refused with -EINVAL
    bad = xdp("r2 = 100000\ncall 44\nexit")
    assert bad.run_xdp(PKT).r0 == (-22) & ((1 << 64) - 1)


def test_adjust_tail_grows_with_zeros_and_shrinks() -> None:
    grow = xdp("r2 = 6\ncall 65\nr0 = 2\nexit").run_xdp(PKT)
    assert grow.packet == PKT + bytes(6)
    shrink = xdp("r2 = -5\ncall 65\nr0 = 2\nexit").run_xdp(PKT)
    assert shrink.packet == PKT[:-5]


def test_adjust_meta_gives_metadata_area() -> None:
    prog = xdp("""
        r6 = r1
        r2 = -8
        call 54
        r2 = *(u32 *)(r6 + 8)
        r3 = *(u32 *)(r6 + 0)
        r4 = r2
        r4 += 8
        if r4 > r3 goto out
        r5 = 0x1122
        *(u64 *)(r2 + 0) = r5
    out:
        r0 = 2
        exit
    """)
    res = prog.run_xdp(PKT)
    assert res.meta == (0x1122).to_bytes(8, "little")
    assert res.packet == PKT
    assert xdp("r2 = -6\ncall 54\nexit").run_xdp(PKT).r0 == (-13) & ((1 << 64) - 1)


def _counter_prog(map_type: MapType) -> tuple[emu.EmuProgram, emu.EmuMap]:
    spec = ProgramSpec("count", ProgType.XDP, assemble("""
        r1 = 0
        *(u32 *)(r10 - 4) = r1
        r2 = r10
        r2 += -4
        r1 = map[id:0]
        call 1
        if r0 == 0 goto out
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
    out:
        r0 = 2
        exit
    """), map_refs={4: MapRef("counts")})
    m = emu.create_map(MapSpec("counts", map_type, 4, 8, 1), ncpus=2)
    return emu.load(spec, maps={"counts": m}), m


def test_map_lookup_pointer_writes_are_visible() -> None:
    prog, m = _counter_prog(MapType.ARRAY)
    counts = emu.run_packets(prog, [PKT] * 5)
    assert counts == {"XDP_PASS": 5}
    assert m[0] == 5


def test_percpu_map_uses_configured_cpu() -> None:
    prog, m = _counter_prog(MapType.PERCPU_ARRAY)
    prog.machine.cpu = 1
    prog.run_xdp(PKT)
    assert m[0] == [0, 1]


def test_load_from_object_spec_map_specs() -> None:
    spec = ProgramSpec("p", ProgType.XDP, assemble("r1 = map[id:0][0]+4\nr0 = *(u32 *)(r1 + 0)\nexit"),
                       map_refs={0: MapRef(".data", PseudoSrc.MAP_VALUE, 4)})
    data = MapSpec(".data", MapType.ARRAY, 4, 8, 1, contents=[(bytes(4), bytes(4) + b"\x09\0\0\0")])
    assert emu.load(spec, maps={".data": data}).run() == 9


def test_hash_update_delete_helpers() -> None:
    h = emu.create_map(MapSpec("h", MapType.HASH, 4, 4, 8))
    prog = xdp("""
        r6 = 5
        *(u32 *)(r10 - 4) = r6
        *(u32 *)(r10 - 8) = r6
        r1 = map[id:1]
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -8
        r4 = 1
        call 2
        r7 = r0
        r1 = map[id:1]
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -8
        r4 = 1
        call 2
        r0 = r7
        r0 <<= 32
        exit
    """, maps={1: h})
    r0 = prog.run()
    assert r0 >> 32 == 0                   # first insert succeeded
    assert h[5] == 5
    second = xdp("r1 = map[id:1]\n*(u32 *)(r10 - 4) = r1\nr2 = r10\nr2 += -4\ncall 3\nexit",
                 maps={1: h})
    assert second.run() == (-2) & ((1 << 64) - 1)   # -ENOENT for a missing key


def test_redirect_and_redirect_map() -> None:
    res = xdp("r1 = 9\nr2 = 0\ncall 23\nexit").run_xdp(PKT)
    assert res.verdict == XdpAction.REDIRECT and res.redirect == emu.Redirect(ifindex=9)
    dev = emu.create_map(MapSpec("tx", MapType.DEVMAP, 4, 4, 8))
    dev[2] = 17
    hit = xdp("r1 = map[id:1]\nr2 = 2\nr3 = 0\ncall 51\nexit", maps={1: dev}).run_xdp(PKT)
    assert hit.verdict == XdpAction.REDIRECT
    assert hit.redirect is not None and (hit.redirect.key, hit.redirect.value) == (2, 17)
    miss = xdp("r1 = map[id:1]\nr2 = 3\nr3 = 2\ncall 51\nexit", maps={1: dev}).run_xdp(PKT)
    assert miss.verdict == XdpAction.PASS and miss.redirect is None


def test_fib_lookup_fills_params() -> None:
    fib = emu.Fib()
    fib.add_route("10.9.0.0/16", ifindex=4, smac="02:00:00:00:00:aa", dmac="02:00:00:00:00:bb")
    fib.add_route("10.8.0.0/16", ifindex=5)
    text = """
        r6 = r1
        r1 = 0
        *(u64 *)(r10 - 64) = r1
        *(u64 *)(r10 - 56) = r1
        *(u64 *)(r10 - 48) = r1
        *(u64 *)(r10 - 40) = r1
        *(u64 *)(r10 - 32) = r1
        *(u64 *)(r10 - 24) = r1
        *(u64 *)(r10 - 16) = r1
        *(u64 *)(r10 - 8) = r1
        r1 = 2
        *(u8 *)(r10 - 64) = r1
        r1 = DST
        *(u32 *)(r10 - 32) = r1
        r1 = r6
        r2 = r10
        r2 += -64
        r3 = 64
        r4 = 0
        call 69
        r1 = *(u32 *)(r10 - 56)
        r1 <<= 8
        r0 |= r1
        r1 = *(u8 *)(r10 - 1)
        r1 <<= 16
        r0 |= r1
        exit
    """
    def run(dst: str) -> int:
        addr = int.from_bytes(ipaddress.IPv4Address(dst).packed, "little")
        return xdp(text.replace("DST", str(addr)), machine=emu.Machine(fib=fib)).run_xdp(PKT).r0
    assert run("10.9.1.1") == (0xBB << 16) | (4 << 8) | emu.FibResult.SUCCESS
    assert run("10.8.1.1") & 0xFF == emu.FibResult.NO_NEIGH
    assert run("172.16.0.1") == emu.FibResult.NOT_FWDED


def test_trace_printk_is_formatted_and_captured() -> None:
    fmt = b"n=%d x=%x\0"
    words = [int.from_bytes(fmt[i:i + 8].ljust(8, b"\0"), "little") for i in range(0, len(fmt), 8)]
    lines = []
    for i, w in enumerate(words):
        lines += [f"r1 = {w} ll", f"*(u64 *)(r10 - {16 - 8 * i}) = r1"]
    text = "\n".join(lines) + "\nr1 = r10\nr1 += -16\nr2 = 10\nr3 = -3\nr4 = 255\ncall 6\nr0 = 2\nexit"
    res = xdp(text).run_xdp(PKT)
    assert res.trace == ["n=-3 x=ff"]


def test_csum_diff_matches_ones_complement() -> None:
    prog = xdp("""
        r1 = 0x01020304
        *(u32 *)(r10 - 4) = r1
        r1 = 0
        r2 = 0
        r3 = r10
        r3 += -4
        r4 = 4
        r5 = 0
        call 28
        exit
    """)
    assert prog.run() == 0x01020304


def test_ringbuf_output_and_reserve_submit() -> None:
    rb = emu.create_map(MapSpec("rb", MapType.RINGBUF, 0, 0, 4096))
    prog = xdp("""
        r1 = 0x64636261
        *(u32 *)(r10 - 4) = r1
        r1 = map[id:1]
        r2 = r10
        r2 += -4
        r3 = 4
        r4 = 0
        call 130
        r1 = map[id:1]
        r2 = 8
        r3 = 0
        call 131
        if r0 == 0 goto out
        r1 = 0x7a
        *(u8 *)(r0 + 7) = r1
        r1 = r0
        r2 = 0
        call 132
    out:
        r0 = 2
        exit
    """, maps={1: rb})
    prog.run_xdp(PKT)
    assert rb.drain() == [b"abcd", bytes(7) + b"z"]
    assert rb.drain() == []


def test_bpf_loop_calls_callback() -> None:
    body = assemble("""
        r1 = 5
        r3 = 0
        r4 = 0
        call 181
        exit
        r0 = 0
        exit
    """)
    func = Instruction(0x18, dst=2, src=PseudoSrc.FUNC, imm=5)   # slot of ld + 1 + imm
    insns = [body[0], func, *body[1:]]
    assert emu.load(insns).run() == 5


def test_tail_call_replaces_program() -> None:
    progs = emu.create_map(MapSpec("jmp", MapType.PROG_ARRAY, 4, 4, 4))
    target = xdp("r0 = 3\nexit")
    progs[1] = target
    caller = xdp("r2 = map[id:1]\nr3 = 1\ncall 12\nr0 = 1\nexit", maps={1: progs})
    assert caller.run_xdp(PKT).verdict == XdpAction.TX
    missing = xdp("r2 = map[id:1]\nr3 = 2\ncall 12\nr0 = 1\nexit", maps={1: progs})
    assert missing.run_xdp(PKT).verdict == XdpAction.DROP


def test_tail_call_chain_is_capped() -> None:
    progs = emu.create_map(MapSpec("jmp", MapType.PROG_ARRAY, 4, 4, 1))
    loop = xdp("r2 = map[id:1]\nr3 = 0\ncall 12\nr0 = 1\nexit", maps={1: progs})
    progs[0] = loop
    assert loop.run_xdp(PKT).verdict == XdpAction.DROP   # 33 tail calls then fall through


def test_prandom_is_seedable_and_ktime_uses_clock() -> None:
    a = xdp("call 7\nexit", machine=emu.Machine(seed=1)).run()
    b = xdp("call 7\nexit", machine=emu.Machine(seed=1)).run()
    assert a == b and a < 1 << 32
    assert xdp("call 5\nexit", machine=emu.Machine(clock=lambda: 1234)).run() == 1234


def test_xdp_load_store_bytes_and_buff_len() -> None:
    prog = xdp("""
        r6 = r1
        r2 = 0
        r3 = r10
        r3 += -8
        r4 = 6
        call 189
        r1 = r6
        r2 = 6
        r3 = r10
        r3 += -8
        r4 = 6
        call 190
        r1 = r6
        call 188
        exit
    """)
    res = prog.run_xdp(PKT)
    assert res.r0 == len(PKT)
    assert res.packet[6:12] == PKT[0:6]


def test_result_is_a_dataclass() -> None:
    res = xdp("r0 = 1\nexit").run_xdp(PKT)
    assert dataclasses.asdict(res)["verdict"] == XdpAction.DROP
