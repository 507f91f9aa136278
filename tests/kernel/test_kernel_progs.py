"""Programs: load, verifier errors, info/tag/xlated, pinning, enumeration, test runs."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest
from kinsns import EXIT, bpftool, counter_spec, mov_imm, rejected_spec, ret, write_first_byte

from pyxdp.abi import MapType, ProgType
from pyxdp.errors import BpfError, MapError, VerifierError
from pyxdp.isa import Instruction, XdpAction
from pyxdp.kernel import (
    BPF_F_TEST_XDP_LIVE_FRAMES,
    Fd,
    Map,
    Program,
    XdpMd,
    list_maps,
    list_programs,
    test_run,
)
from pyxdp.maps import MapSpec

pytestmark = pytest.mark.kernel


def test_load_and_test_run_verdict() -> None:
    with Program.load(ret(XdpAction.DROP), name="drop_all") as p:
        r = test_run(p, bytes(64))
        assert r.retval == XdpAction.DROP
        assert r.data_out == bytes(64)
        assert r.ctx_out is None
        assert p.test_run(bytes(64), repeat=10).retval == XdpAction.DROP


def test_test_run_output_data_and_context() -> None:
    pkt = bytes(range(60))
    with Program.load(write_first_byte(0xAA, verdict=XdpAction.TX)) as p:
        r = test_run(p, pkt)
        assert r.retval == XdpAction.TX
        assert r.data_out == b"\xaa" + pkt[1:]
        ctx = XdpMd(data=0, data_end=len(pkt))
        r = test_run(p, pkt, ctx=ctx)
        out = XdpMd.from_buffer_copy(r.ctx_out)
        assert (out.data, out.data_end) == (0, len(pkt)) and len(r.ctx_out) == ctypes.sizeof(XdpMd)
        assert test_run(p, pkt, repeat=100).duration_ns >= 0


def test_test_run_live_frames_needs_batch_semantics() -> None:
    with Program.load(ret(XdpAction.DROP)) as p:
        r = test_run(p, bytes(64), repeat=4, flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=2)
        assert r.data_out == b""
        with pytest.raises(BpfError) as exc:      # live frames reject an empty packet
            test_run(p, b"", flags=BPF_F_TEST_XDP_LIVE_FRAMES)
        assert exc.value.command == "BPF_PROG_TEST_RUN"


def test_program_writes_map_seen_from_python() -> None:
    with Map.create(MapSpec("counters", MapType.ARRAY, 4, 8, 1)) as m, \
            Program.load(counter_spec(), maps={"counters": m}) as p:
        for _ in range(3):
            assert test_run(p, bytes(64)).retval == XdpAction.PASS
        assert m[0] == 3
        info = p.info()
        assert info.map_ids == [m.id]
        assert info.name == "count"


def test_missing_map_reference_names_the_map() -> None:
    with pytest.raises(MapError, match="counters"):
        Program.load(counter_spec(), maps={})


def test_verifier_error_has_log_index_and_source() -> None:
    with pytest.raises(VerifierError) as exc:
        Program.load(rejected_spec())
    e = exc.value
    assert e.errno in (errno.EACCES, errno.EINVAL)
    assert e.command == "BPF_PROG_LOAD"
    assert "R1 invalid mem access" in e.log and "processed" in e.log
    assert e.insn_index == 2
    assert e.source is not None and "bad.c:3" in e.source and "*(int *)1" in e.source
    assert "instruction 2" in str(e)


def test_verifier_error_index_counts_ld_imm64_as_one() -> None:
    insns = [Instruction(0x18, dst=1, imm=1 << 40), mov_imm(2, 0),
             Instruction(0x61, dst=0, src=2)]  # r0 = *(u32 *)r2 (scalar) ; no exit
    with pytest.raises(VerifierError) as exc:
        Program.load([*insns, EXIT])
    assert exc.value.insn_index == 2


def test_structural_error_without_walk() -> None:
    with pytest.raises(VerifierError) as exc:
        Program.load([mov_imm(0, 0)])      # no exit at all
    assert exc.value.errno == errno.EINVAL and exc.value.log


def test_log_level_keeps_log_of_successful_load() -> None:
    with Program.load(ret(2), log_level=2) as p:
        assert "processed" in p.verifier_log
    with Program.load(ret(2)) as p:
        assert p.verifier_log == ""


def test_info_tag_matches_bpftool_and_xlated_decodes() -> None:
    insns = write_first_byte(0x55)
    with Program.load(insns, name="tagged") as p:
        info = p.info()
        seen = bpftool("prog", "show", "id", str(info.id))
        assert seen["tag"] == info.tag == p.tag
        assert seen["name"] == "tagged" and info.type == ProgType.XDP
        assert info.xlated_size == 8 * len(insns) and info.jited_size > 0
        assert info.load_time_ns > 0 and info.gpl_compatible
        xl = p.xlated()
        assert xl[2:] == insns[2:]
        # the verifier rewrote the u32 xdp_md->data loads into u64 xdp_buff loads
        assert [(i.opcode, i.dst, i.src) for i in xl[:2]] == [(0x79, 2, 1), (0x79, 3, 1)]
        assert any(pi.id == info.id and pi.tag == info.tag for pi in list_programs())


def test_list_maps_sees_ours() -> None:
    with Map.create(MapSpec("listed", MapType.HASH, 4, 4, 1)) as m:
        ids = {mi.id: mi for mi in list_maps()}
        assert ids[m.id].name == "listed"


def test_pin_from_pin_from_id(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "prog")
    with Program.load(ret(1), name="pinned") as p:
        p.pin(path)
        assert bpftool("prog", "show", "pinned", path)["id"] == p.id
        with Program.from_pin(path) as again:
            assert again.name == "pinned" and again.id == p.id
            assert test_run(again, bytes(64)).retval == 1
        with Program.from_id(p.id) as by_id:
            assert by_id.tag == p.tag
        p.unpin()
        assert not os.path.exists(path)


def test_fd_ownership_no_leaks() -> None:
    p = Program.load(ret(2))
    raw = p.fd.fileno()
    dup = p.fd.dup()
    assert dup.fileno() != raw
    p.close()
    p.close()                                 # idempotent
    assert p.fd.closed
    with pytest.raises(ValueError):
        p.fd.fileno()
    with Program.from_fd(dup) as again:       # the duplicate keeps the program alive
        assert again.info().type == ProgType.XDP
    assert dup.closed
    m = Map.create(MapSpec("gc", MapType.ARRAY, 4, 4, 1))
    fd_path = f"/proc/self/fd/{m.fd.fileno()}"
    del m                                     # __del__ closes
    assert not os.path.exists(fd_path) or "bpf" not in os.readlink(fd_path)
    with Fd(os.open("/dev/null", os.O_RDONLY)) as f:
        assert int(f) >= 0


def test_program_from_pin_of_a_map_names_path_and_kind(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "not_a_prog")
    with Map.create(MapSpec("pinned_map", MapType.ARRAY, 4, 4, 1)) as m:
        m.pin(path)
        with pytest.raises(BpfError, match=rf"{path} is a BPF map, not a BPF program") as exc:
            Program.from_pin(path)
        assert exc.value.errno == errno.EINVAL
        with pytest.raises(BpfError, match=r"is a BPF map, not a BPF program"):
            Program.from_fd(m.fd.dup())


BPF_F_SLEEPABLE = 1 << 4


def test_test_run_raw_tracepoint_without_data() -> None:
    """Raw tracepoint runs take only a context (the tracepoint's u64 arguments): any data
    pointer or a repeat count makes the kernel say EINVAL."""
    insns = [Instruction(0x79, dst=0, src=1, off=8), EXIT]      # r0 = ctx->args[1]
    with Program.load(insns, type=ProgType.RAW_TRACEPOINT, license="GPL") as p:
        args = (5).to_bytes(8, "little") + (77).to_bytes(8, "little")
        r = p.test_run(ctx=args)
        assert r.retval == 77 and r.data_out == b"" and r.ctx_out is None
        assert test_run(p, ctx=args, repeat=0).retval == 77
        with Program.load(ret(9), type=ProgType.RAW_TRACEPOINT, license="GPL") as q:
            assert q.test_run().retval == 9
            assert test_run(Fd(os.dup(q.fd.fileno())), b"").retval == 9   # bare fd: info
        with pytest.raises(ValueError, match="once"):
            p.test_run(ctx=args, repeat=5)


def test_test_run_syscall_program_writes_its_context_back() -> None:
    insns = [Instruction(0x61, dst=2, src=1, off=0),               # r2 = *(u32 *)ctx
             Instruction(0x07, dst=2, imm=1),                       # r2 += 1
             Instruction(0x63, dst=1, src=2, off=0),                # *(u32 *)ctx = r2
             Instruction(0xBF, dst=0, src=2), EXIT]                 # return r2
    with Program.load(insns, type=ProgType.SYSCALL, license="GPL",
                      flags=BPF_F_SLEEPABLE) as p:
        r = p.test_run(ctx=(41).to_bytes(4, "little"))
        assert r.retval == 42
        assert r.ctx_out == (42).to_bytes(4, "little")
        assert p.test_run(ctx=(1).to_bytes(4, "little"), ctx_only=True).retval == 2
