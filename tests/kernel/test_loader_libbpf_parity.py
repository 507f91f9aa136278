"""Loader behaviour that must match libbpf: global data map flags, .rodata binding, BTF
sanitizing without a needless copy, and verifier errors pointing at the C source."""

from __future__ import annotations

import copy
import errno
import mmap
from pathlib import Path

import pytest

from pyxdp.abi import MapType, ProgType
from pyxdp.asm import Builder
from pyxdp.btf import BtfFeatures, sanitize
from pyxdp.btf._sanitize import needs_sanitizing
from pyxdp.elf import load_object, set_variable
from pyxdp.errors import BpfError, VerifierError
from pyxdp.kernel import Map
from pyxdp.kernel.loader import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, load_collection
from pyxdp.maps import MapSpec
from pyxdp.spec import ObjectSpec, ProgramSpec

pytestmark = pytest.mark.kernel

DATA = Path(__file__).parent.parent / "data"
PKT = bytes(range(64))
XDP_DROP, XDP_PASS = 1, 2


# -- 1. global data maps --------------------------------------------------------------------
def test_global_data_maps_have_libbpf_flags_and_rodata_is_frozen() -> None:
    s = load_object(DATA / "obj" / "global_data.o")
    set_variable(s, "ret_action", XDP_DROP)
    with load_collection(s) as c:
        flags = {name: c.maps[name].info().flags for name in (".rodata", ".data", ".bss")}
        assert flags[".rodata"] == BPF_F_MMAPABLE | BPF_F_RDONLY_PROG
        assert flags[".data"] == flags[".bss"] == BPF_F_MMAPABLE
        assert s.maps[".rodata"].flags == 0          # the ObjectSpec is left untouched
        with pytest.raises(BpfError) as ei:            # frozen: user space cannot write
            c.maps[".rodata"]._update(bytes(4), bytes(s.maps[".rodata"].value_size), 0)
        assert ei.value.errno == errno.EPERM
        prog = c.programs["global_data"]
        assert prog.test_run(PKT).retval == XDP_DROP
        assert c.maps[".rodata"].id in prog.info().map_ids
        # MMAPABLE is what makes the libbpf skeleton way of reading globals work
        packets = s.variables["packets"]
        with mmap.mmap(c.maps[".data"].fd.fileno(), mmap.PAGESIZE) as mm:
            raw = mm[packets.offset:packets.offset + packets.size]
            assert int.from_bytes(raw, "little") == 6
            mm[packets.offset:packets.offset + 8] = (100).to_bytes(8, "little")
        prog.test_run(PKT)
        assert c.variables["packets"].value == 101


def _custom_sections_object(store_into_rodata: bool) -> ObjectSpec:
    """``.rodata.cfg`` (a limit) and ``.data.cnt`` (a counter), custom data sections a
    program reads and writes through MAP_VALUE references, as clang emits them."""
    b = Builder()
    b.ld_map_value(1, ".rodata.cfg")
    if store_into_rodata:
        b.st("w", 1, 0, 7)                       # *(u32 *)cfg = 7: must not verify
    b.ldx("w", 2, 1, 0)                          # r2 = cfg.limit
    b.ld_map_value(3, ".data.cnt")
    b.stx("w", 3, 2, 0)                          # cnt = limit
    b.mov64(0, XDP_PASS)
    b.exit()
    prog = ProgramSpec(name="custom_data", type=ProgType.XDP, instructions=b.build(),
                       map_refs=b.spec_map_refs())
    maps = {
        ".rodata.cfg": MapSpec(".rodata.cfg", MapType.ARRAY, 4, 4, 1,
                               contents=[(bytes(4), (42).to_bytes(4, "little"))], freeze=True),
        ".data.cnt": MapSpec(".data.cnt", MapType.ARRAY, 4, 4, 1,
                             contents=[(bytes(4), bytes(4))]),
    }
    return ObjectSpec(programs={"custom_data": prog}, maps=maps)


def test_custom_data_sections_get_the_same_flags() -> None:
    with load_collection(_custom_sections_object(store_into_rodata=False)) as c:
        assert c.maps[".rodata.cfg"].info().flags == BPF_F_MMAPABLE | BPF_F_RDONLY_PROG
        assert c.maps[".data.cnt"].info().flags == BPF_F_MMAPABLE
        assert c.programs["custom_data"].test_run(PKT).retval == XDP_PASS
        assert c.maps[".data.cnt"][0] == 42


def test_program_store_into_rodata_is_rejected_by_the_verifier() -> None:
    with pytest.raises(VerifierError) as ei:
        load_collection(_custom_sections_object(store_into_rodata=True))
    assert ei.value.insn_index == 1
    assert "write into map forbidden" in ei.value.log


# -- 4. BTF sanitizing ------------------------------------------------------------------------
def test_btf_is_not_copied_when_the_kernel_understands_it(monkeypatch) -> None:
    s = load_object("/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o"
                    if Path("/usr/lib/x86_64-linux-gnu/bpf/xdp-dispatcher.o").exists()
                    else DATA / "obj" / "global_data.o")
    assert not needs_sanitizing(s.btf, BtfFeatures())
    assert sanitize(s.btf, BtfFeatures()) is s.btf
    old_kernel = BtfFeatures(datasec=False)
    assert needs_sanitizing(s.btf, old_kernel)
    assert sanitize(s.btf, old_kernel) is not s.btf

    def no_copy(*_a: object, **_k: object) -> None:
        raise AssertionError("BTF deep-copied although nothing needs sanitizing")

    monkeypatch.setattr(copy, "deepcopy", no_copy)
    with load_collection(s) as c:
        assert c.btf_fd is not None


# -- 6. verifier errors from C objects ------------------------------------------------------
def test_verifier_error_names_the_c_source_line() -> None:
    src = (DATA / "c" / "verifier_reject.c").read_text().splitlines()
    bad_line = next(i for i, text in enumerate(src, 1) if "BAD:" in text)
    s = load_object(DATA / "obj" / "verifier_reject.o")
    with pytest.raises(VerifierError) as ei:
        load_collection(s)
    err = ei.value
    assert err.program == "verifier_reject"
    assert err.source is not None and f"verifier_reject.c:{bad_line}:" in err.source
    assert "data[23]" in err.source
    text = str(err)
    assert "lines omitted)" in text
    assert "invalid access to packet" in text
    assert "R1 offset is outside of the packet" in text
    assert f"verifier_reject.c:{bad_line}" in text
    assert len(text.splitlines()) < 15                 # the tail, not the whole log
    assert len(err.log.splitlines()) > 30              # ... while the log stays complete


# -- 2. pins that are not what they are opened as -------------------------------------------
def test_map_from_pin_of_a_rodata_map_keeps_flags(pin_dir: str) -> None:
    with load_collection(load_object(DATA / "obj" / "global_data.o")) as c:
        c.maps[".rodata"].pin(f"{pin_dir}/rodata")
        with Map.from_pin(f"{pin_dir}/rodata") as m:
            assert m.spec.flags == BPF_F_MMAPABLE | BPF_F_RDONLY_PROG
            assert m.spec.value_size == c.maps[".rodata"].spec.value_size
