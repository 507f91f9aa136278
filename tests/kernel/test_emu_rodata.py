"""Stores into read-only maps are refused at load by both backends: the kernel's verifier
("write into map forbidden") and the emulator (:mod:`pyxdp.emu.rdonly`).

``tests/data/obj/rodata_write.o`` stores into a ``.rodata`` variable, through a lookup in a
``BPF_F_RDONLY_PROG`` map (directly and in a bpf-to-bpf callee), calls
``bpf_map_update_elem`` on that map and ``bpf_xdp_load_bytes`` into ``.rodata``; its ``read_only`` program only reads and loads.  Small
assembled programs cover a pointer spilled to the stack and reloaded before an atomic
add, and a read-only map that stays readable.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pyxdp.abi import BPF_F_RDONLY_PROG, MapType, ProgType, XdpAction
from pyxdp.asm import assemble
from pyxdp.backend import Backend
from pyxdp.elf import load_object
from pyxdp.errors import EmulatorError, PyxdpError, VerifierError
from pyxdp.isa import PseudoSrc
from pyxdp.maps import MapSpec
from pyxdp.spec import MapRef, ObjectSpec, ProgramSpec

OBJ = Path(__file__).parent.parent / "data" / "obj"
FRAME = bytes(64)


def _refused(backend: Backend, obj: ObjectSpec) -> PyxdpError:
    with pytest.raises((VerifierError, EmulatorError)) as e:
        backend.load(obj).close()
    assert "write into map forbidden" in str(e.value)
    if backend.name == "kernel":
        assert isinstance(e.value, VerifierError) and e.value.errno == errno.EACCES
    return e.value


def test_reading_is_fine(backend: Backend) -> None:
    with backend.load(load_object(OBJ / "rodata_write.o").only("read_only")) as coll:
        prog = coll.programs["read_only"]
        assert prog.run_packet(FRAME).verdict == XdpAction.PASS
        coll.maps["config"][1] = 8          # user space may still write the map
        assert prog.run_packet(FRAME).verdict == XdpAction.DROP


@pytest.mark.parametrize("name", ["store_rodata", "store_lookup", "store_in_callee",
                                  "update_rdonly", "load_into_rodata"])
def test_program_stores_are_refused(backend: Backend, name: str) -> None:
    err = _refused(backend, load_object(OBJ / "rodata_write.o").only(name))
    if isinstance(err, EmulatorError):
        assert err.pc is not None


def _asm_object(text: str, flags: int = 0, freeze: bool = True) -> ObjectSpec:
    insns = assemble(text)
    ro = MapSpec(".rodata", MapType.ARRAY, 4, 8, 1, flags=flags, freeze=freeze,
                 contents=[(bytes(4), (41).to_bytes(8, "little"))])
    refs = {0: MapRef(".rodata", PseudoSrc.MAP_VALUE, 0)}
    prog = ProgramSpec("asm_prog", ProgType.XDP, insns, section="xdp", map_refs=refs)
    return ObjectSpec(programs={"asm_prog": prog}, maps={".rodata": ro})


SPILL_ATOMIC = """
r1 = 0 ll
*(u64 *)(r10 - 16) = r1
r1 = 0
r2 = *(u64 *)(r10 - 16)
r3 = 1
lock *(u64 *)(r2 + 0) += r3
r0 = 2
exit
"""

READ = """
r1 = 0 ll
*(u64 *)(r10 - 16) = r1
r2 = *(u64 *)(r10 - 16)
r0 = *(u64 *)(r2 + 0)
r0 -= 39
exit
"""


def test_spilled_pointer_then_atomic_is_refused(backend: Backend) -> None:
    _refused(backend, _asm_object(SPILL_ATOMIC))


def test_spilled_pointer_read_loads(backend: Backend) -> None:
    with backend.load(_asm_object(READ)) as coll:
        assert coll.programs["asm_prog"].run_packet(FRAME).verdict == XdpAction.PASS


def test_emulator_writable_data_map_is_not_refused() -> None:
    from pyxdp.emu import EmuBackend

    obj = _asm_object(SPILL_ATOMIC, freeze=False)
    obj.maps[".data"] = obj.maps.pop(".rodata")
    obj.programs["asm_prog"].map_refs = {0: MapRef(".data", PseudoSrc.MAP_VALUE, 0)}
    with EmuBackend().load(obj) as coll:
        assert coll.programs["asm_prog"].run_packet(FRAME).verdict == XdpAction.PASS
        assert coll.maps[".data"][0] == 42


def test_emulator_rdonly_prog_flag_alone_is_enough() -> None:
    from pyxdp.emu import EmuBackend

    with pytest.raises(EmulatorError, match="write into map forbidden"):
        EmuBackend().load(_asm_object(SPILL_ATOMIC, flags=BPF_F_RDONLY_PROG, freeze=False))


def test_rodata_is_frozen_for_user_space(backend: Backend) -> None:
    with backend.load(load_object(OBJ / "global_data.o")) as coll:
        ro = coll.maps[".rodata"]
        before = ro[0]
        for write in (lambda: ro.update(0, bytes(len(before))),
                      lambda: ro.write_value_bytes(bytes(4), 0, b"\1")):
            with pytest.raises(PyxdpError) as e:
                write()
            assert e.value.errno == errno.EPERM  # type: ignore[attr-defined]
        assert ro[0] == before
        coll.maps[".data"][0] = 9                      # .data is not frozen
        assert coll.maps[".data"][0] == 9
        assert coll.programs["global_data"].run_packet(FRAME).verdict == XdpAction.PASS


def test_emulator_freeze_keeps_program_writes() -> None:
    from pyxdp.emu import EmuBackend

    obj = _asm_object(SPILL_ATOMIC, freeze=True)
    obj.maps[".data"] = obj.maps.pop(".rodata")        # frozen, but not read-only data
    obj.programs["asm_prog"].map_refs = {0: MapRef(".data", PseudoSrc.MAP_VALUE, 0)}
    with EmuBackend().load(obj) as coll:
        assert coll.programs["asm_prog"].run_packet(FRAME).verdict == XdpAction.PASS
        assert coll.maps[".data"][0] == 42
        with pytest.raises(PyxdpError, match="frozen"):
            coll.maps[".data"][0] = 0


STORE = """
r1 = 0 ll
r2 = 7
*(u64 *)(r1 + 0) = r2
r0 = 2
exit
"""


@pytest.mark.parametrize("text", [STORE, SPILL_ATOMIC])
def test_emulator_faults_on_a_store_the_load_check_let_through(
        monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """The backstop: programs see read-only data through a read-only view, so even with
    the load-time check switched off a store faults instead of changing the map."""
    import pyxdp.emu.program as emu_program
    from pyxdp.emu import EmuBackend

    monkeypatch.setattr(emu_program, "check_readonly_writes", lambda *a: None)
    with EmuBackend().load(_asm_object(text)) as coll:
        with pytest.raises(EmulatorError, match="write into read-only memory") as e:
            coll.programs["asm_prog"].run_packet(FRAME)
        assert e.value.pc is not None
        assert coll.maps[".rodata"][0] == 41
