"""Chains of XDP programs by exit rewriting (pyxdp.chain), in the kernel and the emulator.

The stages are ordinary clang-built objects (tests/data/c/chain_stages.c and an unmodified
xdp-tools object), never rebuilt for the chain: the rewrite turns their exits into tail
calls.  Every property is checked through the ``backend`` fixture, so the emulator must
agree with the kernel on each.
"""

from __future__ import annotations

import ipaddress
import os

import pytest

from pyxdp.abi import XdpAction
from pyxdp.asm import assemble
from pyxdp.chain import MAX_STAGES, ChainError, Stage, build
from pyxdp.chain.rewrite import chain_stage, function_starts, stack_floor
from pyxdp.elf import load_object
from pyxdp.packets.build import ethernet, ipv4, udp

OBJ = os.path.join(os.path.dirname(__file__), "..", "data", "obj")
XDPFILT = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_ip.o"   # a listed source: DROP
DENIED = "198.18.9.9"
MAP_FLAG_SRC = 1                     # xdp-filter's flag: match the source address


@pytest.fixture(scope="module")
def stages_obj():
    return load_object(os.path.join(OBJ, "chain_stages.o"))


def frame(src: str = "198.18.0.1", first: int | None = None) -> bytes:
    f = ethernet(ipv4(udp(b"payload" * 4, dport=9), src=src, dst="198.18.0.2"))
    return f if first is None else bytes([first, first]) + f[2:]


def seen(gen, name: str, slot: int) -> int:
    return int(gen.loaded[name].maps["seen"][slot])


def make(obj, names, **kw):
    return [Stage(n, obj, n, priority=i, **kw) for i, n in enumerate(names)]


@pytest.mark.parametrize(("names", "verdict"), [
    (["stage_pass", "stage_drop"], XdpAction.DROP),     # PASS continues to the drop
    (["stage_drop", "stage_pass"], XdpAction.DROP),     # DROP ends the chain
    (["stage_pass"], XdpAction.PASS),                   # end of chain: the stage's verdict
    (["stage_pass", "stage_pass2"], XdpAction.PASS),
])
def test_order_and_continue_semantics(backend, stages_obj, names, verdict) -> None:
    objs = {"stage_pass2": "stage_pass"}
    stages = [Stage(n, stages_obj, objs.get(n, n), priority=i) for i, n in enumerate(names)]
    with build(backend, stages) as gen:
        for _ in range(3):
            assert gen.root_program.run_packet(frame()).verdict == verdict
        ran = []
        for n in names:
            slot = {"stage_pass": 0, "stage_pass2": 0, "stage_drop": 1}[n]
            ran.append(seen(gen, n, slot))
        # each stage ran three times until the first one that ended the chain
        stop = next((i for i, n in enumerate(names) if n == "stage_drop"), len(names) - 1)
        assert ran == [3 if i <= stop else 0 for i in range(len(names))]


def test_priority_orders_stages(backend, stages_obj) -> None:
    """Priorities, not list order, decide: the drop stage at priority 10 runs before the
    pass stage at 20 even when given second."""
    st = [Stage("p", stages_obj, "stage_pass", priority=20),
          Stage("d", stages_obj, "stage_drop", priority=10)]
    with build(backend, st) as gen:
        assert [s.name for s in gen.stages] == ["d", "p"]
        assert gen.root_program.run_packet(frame()).verdict == XdpAction.DROP
        assert seen(gen, "d", 1) == 1 and seen(gen, "p", 0) == 0


@pytest.mark.parametrize(("first", "alone"), [
    (0x02, XdpAction.PASS), (0xDD, XdpAction.DROP)])
def test_rewritten_program_keeps_its_behaviour(backend, stages_obj, first, alone) -> None:
    """`classify` (stack buffer, a bpf-to-bpf call, several exits) gives alone and in a
    chain the same verdicts; where it passes, the next stage decides."""
    with backend.load(stages_obj) as coll:
        assert coll.programs["classify"].run_packet(frame(first=first)).verdict == alone
    st = make(stages_obj, ["classify", "stage_drop"])
    with build(backend, st) as gen:
        got = gen.root_program.run_packet(frame(first=first)).verdict
        assert got == XdpAction.DROP            # DROP itself, or PASS then the drop stage
        assert seen(gen, "classify", 2) == 1
        assert seen(gen, "stage_drop", 1) == (1 if alone == XdpAction.PASS else 0)
    with build(backend, make(stages_obj, ["classify", "stage_pass"])) as gen:
        assert gen.root_program.run_packet(frame(first=first)).verdict == alone


def test_continue_on_other_verdicts(backend, stages_obj) -> None:
    """continue_on is the stage's choice: a drop stage continuing on DROP hands on."""
    st = [Stage("d", stages_obj, "stage_drop", priority=1,
                continue_on=frozenset({XdpAction.DROP})),
          Stage("p", stages_obj, "stage_pass", priority=2)]
    with build(backend, st) as gen:
        assert gen.root_program.run_packet(frame()).verdict == XdpAction.PASS
        assert seen(gen, "d", 1) == 1 and seen(gen, "p", 0) == 1


def test_empty_chain_returns_the_default(backend) -> None:
    with build(backend, [], default=XdpAction.DROP) as gen:
        assert gen.root_program.run_packet(frame()).verdict == XdpAction.DROP


def test_unmodified_xdp_tools_object_chains(backend) -> None:
    """xdp-filter's IP program (allow mode), as Debian ships it, in front of a counting stage:
    a denied source is dropped by the filter and never reaches the next stage."""
    if not os.path.exists(XDPFILT):
        pytest.fail(f"{XDPFILT} missing: scripts/install.sh installs xdp-tools")
    filt = load_object(XDPFILT)
    stages = [Stage("filter", filt, priority=1),
              Stage("count", load_object(os.path.join(OBJ, "chain_stages.o")), "stage_pass",
                    priority=2)]
    with build(backend, stages) as gen:
        gen.loaded["filter"].maps["filter_ipv4"].update(
            ipaddress.IPv4Address(DENIED).packed, MAP_FLAG_SRC)
        assert gen.root_program.run_packet(frame(src=DENIED)).verdict == XdpAction.DROP
        assert seen(gen, "count", 0) == 0
        assert gen.root_program.run_packet(frame()).verdict == XdpAction.PASS
        assert seen(gen, "count", 0) == 1


def test_refusals_name_the_reason(backend, stages_obj) -> None:
    tail = load_object(os.path.join(OBJ, "tail_call.o"))
    xdp_with_tail = next(p for p in tail.programs.values()
                         if any(i.is_helper_call and i.imm == 12 for i in p.instructions))
    with pytest.raises(ChainError, match="already uses bpf_tail_call"):
        build(backend, [Stage("t", tail, xdp_with_tail.name)])
    tc = load_object(os.path.join(OBJ, "subprog.o"))
    with pytest.raises(ChainError, match="XDP programs only"):
        build(backend, [Stage("tc", tc, "call_add3")])
    with pytest.raises(ChainError, match="given twice"):
        build(backend, [Stage("a", stages_obj, "stage_pass"),
                        Stage("a", stages_obj, "stage_drop")])
    with pytest.raises(ChainError, match="at most"):
        build(backend, [Stage(f"s{i}", stages_obj, "stage_pass", priority=i)
                        for i in range(MAX_STAGES + 1)])
    with pytest.raises(ChainError, match="not XDP verdicts"):
        build(backend, [Stage("a", stages_obj, "stage_pass", continue_on=frozenset({9}))])


# -- the pure parts ----------------------------------------------------------------------------
def test_stack_floor_follows_derived_pointers_and_spills() -> None:
    insns = assemble("""
        r2 = r10
        r2 += -40
        *(u64 *)(r10 - 8) = r2
        r3 = *(u64 *)(r10 - 8)
        *(u32 *)(r3 - 4) = 1
        r0 = 2
        exit
    """)
    assert stack_floor(insns) == -44        # through the spilled and reloaded pointer


def test_stack_floor_joins_paths() -> None:
    insns = assemble("""
        r2 = r10
        if r1 == 0 goto +2
        r2 += -16
        goto +1
        r2 += -64
        *(u8 *)(r2 + 0) = 1
        r0 = 2
        exit
    """)
    assert stack_floor(insns) == -64


def test_unbounded_stack_pointer_is_refused() -> None:
    insns = assemble("""
        r2 = r10
        r3 = *(u32 *)(r1 + 0)
        r2 += r3
        r0 = 2
        exit
    """)
    with pytest.raises(ChainError, match="cannot be bounded"):
        stack_floor(insns)


def test_full_stack_is_refused(stages_obj) -> None:
    import copy

    from pyxdp.abi import ProgType
    from pyxdp.spec import ProgramSpec

    insns = assemble("""
        *(u64 *)(r10 - 512) = r1
        r0 = 2
        exit
    """)
    spec = ProgramSpec(name="full", type=ProgType.XDP, instructions=insns)
    with pytest.raises(ChainError, match="no 8 bytes"):
        chain_stage(copy.copy(spec), "pyxdp_chain", 1)


def test_rewrite_moves_calls_maps_and_infos(stages_obj) -> None:
    spec = stages_obj.programs["classify"]
    new = chain_stage(spec, "pyxdp_chain", 1)
    assert len(function_starts(new)) == len(function_starts(spec)) == 2
    assert sum(i.is_exit for i in new.instructions) == 3     # epilogue x2 + subprogram's
    assert {r.map_name for r in new.map_refs.values()} == {"seen", "pyxdp_chain"}
    for idx, ref in new.map_refs.items():
        assert new.instructions[idx].opcode == 0x18 and new.instructions[idx].src == 1, ref
    starts = [f.insn_off for f in new.func_info]
    assert starts[0] == 0 and len(starts) == len(spec.func_info)
    offs = [li.insn_off for li in new.line_info]
    assert offs == sorted(offs) and offs[0] == 0 and len(offs) == len(spec.line_info)


@pytest.mark.kernel
def test_expected_attach_type_survives_a_load_without_btf(stages_obj) -> None:
    """Regression: a program loaded without BTF lost its expected_attach_type (the loader
    rebuilt its spec for the line info), which the kernel compares before two programs may
    share a prog array; libbpf always passes it."""
    import copy

    from pyxdp.chain import CHAIN_MAP, chain_map_spec, root_program, stage_object
    from pyxdp.kernel import KernelBackend

    be = KernelBackend()
    pa = be.create_map(chain_map_spec())
    try:
        with be.load(root_program(), maps={CHAIN_MAP: pa}):     # no BTF: the owner
            so = stage_object(Stage("p", stages_obj, "stage_pass"), 0)
            assert so.btf is not None
            with be.load(so, maps={CHAIN_MAP: pa}) as coll:       # with BTF
                pa[0] = coll.programs["stage_pass"]                # refused before the fix
                stripped = copy.copy(so)
                stripped.btf = None
                prog = copy.copy(so.programs["stage_pass"])
                prog.func_info, prog.line_info = [], []
                stripped.programs = {"stage_pass": prog}
                with be.load(stripped, maps={CHAIN_MAP: pa}) as coll2:
                    pa[1] = coll2.programs["stage_pass"]
    finally:
        pa.close()


def test_capture_records_every_final_verdict_and_samples(backend, stages_obj) -> None:
    """The capture generation writes one record per packet with the verdict that ended the
    chain (whichever stage ended it, or the end of the chain), the ingress ifindex, the
    frame's length and its first bytes; with 1-in-4 sampling about a quarter."""
    import struct

    from pyxdp.chain import CAPTURE_MAP, Capture, capture_map_spec

    ring = backend.create_map(capture_map_spec(1 << 20))
    try:
        st = make(stages_obj, ["stage_pass", "stage_drop"])
        with build(backend, st, capture=Capture(CAPTURE_MAP, snaplen=32), ring=ring) as gen:
            f = frame()
            assert gen.root_program.run_packet(f, ingress_ifindex=1).verdict == XdpAction.DROP
            (rec,) = ring.drain()
            verdict, ifindex, length, caplen = struct.unpack_from("<IIII", rec)
            assert (verdict, ifindex, length, caplen) == (1, 1, len(f), 32)
            assert rec[24:56] == f[:32]
        with build(backend, make(stages_obj, ["stage_pass"]),
                   capture=Capture(CAPTURE_MAP, snaplen=16, sample=4), ring=ring) as gen:
            for _ in range(800):
                gen.root_program.run_packet(frame())
            n = len(ring.drain())
            assert 120 <= n <= 280, n          # 200 expected; binomial sd ~12
        with pytest.raises(ChainError, match="power of two"):
            Capture(CAPTURE_MAP, sample=3)
    finally:
        close = getattr(ring, "close", None)
        if close:
            close()


@pytest.mark.parametrize("before,after", [(True, False), (True, True)])
def test_capture_before_the_programs(backend, stages_obj, before: bool, after: bool) -> None:
    """``before`` writes each packet as it enters the chain, before any stage ran (its
    verdict field CAPTURE_BEFORE, the frame as it arrived, even though a stage then
    rewrites or drops it); with ``after`` too, the final verdict follows it."""
    import struct

    from pyxdp.chain import CAPTURE_MAP, Capture, capture_map_spec
    from pyxdp.chain.rewrite import CAPTURE_BEFORE

    ring = backend.create_map(capture_map_spec(1 << 20))
    try:
        st = make(stages_obj, ["stage_pass", "stage_drop"])
        cap = Capture(CAPTURE_MAP, snaplen=32, before=before, after=after)
        with build(backend, st, capture=cap, ring=ring) as gen:
            f = frame()
            assert gen.root_program.run_packet(f, ingress_ifindex=3).verdict == XdpAction.DROP
            assert seen(gen, "stage_drop", 1) == 1          # the stages still ran
            recs = ring.drain()
            heads = [struct.unpack_from("<IIII", r) for r in recs]
            want = [(CAPTURE_BEFORE, 3, len(f), 32)] + ([(1, 3, len(f), 32)] if after else [])
            assert heads == want
            assert all(r[24:56] == f[:32] for r in recs)
        with pytest.raises(ChainError, match="before the programs, after them, or both"):
            Capture(CAPTURE_MAP, before=False, after=False)
    finally:
        close = getattr(ring, "close", None)
        if close:
            close()
