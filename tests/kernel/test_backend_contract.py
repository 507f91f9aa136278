"""One backend contract (:mod:`pyxdp.backend`), two backends: every test here runs against
the emulator (:class:`pyxdp.emu.EmuBackend`, anywhere) and the kernel
(:class:`pyxdp.kernel.KernelBackend`, marked ``kernel``).

The objects are the committed clang-built test objects and small compiled or assembled
programs; what is asserted is what an app relies on: verdicts and output bytes, maps
shared between Python and the program, global variables, prog-array slots, pins by name
shared between loads (and refused on a layout mismatch), nothing left behind on failure.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxdp.abi import LIBBPF_PIN_BY_NAME, MapType, XdpAction
from pyxdp.asm import programs as progs
from pyxdp.backend import Backend, LoadedCollection, LoadedProgram, RunResult
from pyxdp.compiler import compile_module
from pyxdp.elf import load_object, set_variable
from pyxdp.errors import MapError, PyxdpError
from pyxdp.maps import MapSpec
from pyxdp.packets import build
from pyxdp.spec import ObjectSpec

OBJ = Path(__file__).parent.parent / "data" / "obj"
FRAME = build.ethernet(build.ipv4(build.udp(bytes(18), sport=1000, dport=53),
                                  src="198.18.0.1", dst="198.18.0.2"),
                       src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

POP4 = """
from pyxdp.compiler.lang import *
seen = ArrayMap[u32, u64](max_entries=4)

@xdp
def pop4(ctx):
    seen.update(0, ctx.ingress_ifindex)
    if ctx.adjust_head(4) != 0:
        return XDP_ABORTED
    return XDP_PASS
"""


@pytest.fixture
def pin_path(backend: Backend) -> Iterator[str]:
    """A fresh pin directory: on bpffs for the kernel, a name for the emulator's pins."""
    if backend.name == "kernel":
        from pyxdp.kernel import ensure_bpffs

        path = os.path.join(ensure_bpffs(), f"pyxdpb-{secrets.token_hex(4)}")
    else:
        path = f"/emulated/pyxdpb-{secrets.token_hex(4)}"
    try:
        yield path
    finally:
        if backend.name == "kernel":
            shutil.rmtree(path, ignore_errors=True)


def _counting_object(action: XdpAction = XdpAction.DROP, pinned: bool = False) -> ObjectSpec:
    prog = progs.xdp_count(action)
    counters = progs.counters_spec()
    if pinned:
        counters.pinning = LIBBPF_PIN_BY_NAME
    return ObjectSpec(programs={prog.name: prog}, maps={counters.name: counters})


def test_both_backends_satisfy_the_protocol(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name in ("kernel", "emulator")
    with backend.load(_counting_object()) as coll:
        assert isinstance(coll, LoadedCollection)
        assert list(coll) == ["xdp_count"]
        prog = coll.programs["xdp_count"]
        assert isinstance(prog, LoadedProgram)
        assert prog.name == "xdp_count"


def test_run_packet_gives_verdict_and_counts_in_maps(backend: Backend) -> None:
    with backend.load(_counting_object(XdpAction.DROP)) as coll:
        prog = coll.programs["xdp_count"]
        for _ in range(3):
            res = prog.run_packet(FRAME)
            assert isinstance(res, RunResult)
            assert res.verdict is XdpAction.DROP and res.retval == 1
            assert res.packet == FRAME
        per_cpu = coll.maps["counters"][0]
        assert sum(per_cpu) == 3
        assert sum(coll.maps["counters"][1]) == 3 * len(FRAME)
        if backend.name == "kernel":
            assert res.duration_ns is not None
        else:
            assert res.duration_ns is None


def test_output_bytes_after_a_rewrite_are_the_same(backend: Backend) -> None:
    prog = progs.xdp_reflect()
    obj = ObjectSpec(programs={prog.name: prog},
                     maps={progs.COUNTERS: progs.counters_spec()})
    with backend.load(obj) as coll:
        res = coll.programs[prog.name].run_packet(FRAME)
    assert res.verdict is XdpAction.TX
    assert res.packet == FRAME[6:12] + FRAME[0:6] + FRAME[12:]


def test_adjust_head_and_ingress_device(backend: Backend) -> None:
    obj = compile_module(POP4)
    with backend.load(obj.spec) as coll:
        maps = obj.typed_maps(coll)
        prog = coll.programs["pop4"]
        res = prog.run_packet(FRAME)
        assert res.verdict is XdpAction.PASS
        assert res.packet == FRAME[4:]
        assert maps["seen"][0] == 1            # the loopback device by default, on both
        res = prog.run_packet(FRAME, ingress_ifindex=1)
        assert res.packet == FRAME[4:]
        assert maps["seen"][0] == 1
        with pytest.raises(ValueError, match="ingress_ifindex"):
            prog.run_packet(FRAME, rx_queue_index=1)


def test_python_writes_reach_the_program(backend: Backend) -> None:
    """A map changed from Python changes the next verdict (the filter's whole model)."""
    src = """
from pyxdp.compiler.lang import *
verdict = ArrayMap[u32, u32](max_entries=1)

@xdp
def by_map(ctx):
    v = verdict.lookup(0)
    if v:
        return v.value
    return XDP_ABORTED
"""
    obj = compile_module(src)
    with backend.load(obj.spec) as coll:
        maps = obj.typed_maps(coll)
        prog = coll.programs["by_map"]
        assert prog.run_packet(FRAME).verdict is XdpAction.ABORTED   # value 0
        maps["verdict"][0] = int(XdpAction.DROP)
        assert prog.run_packet(FRAME).verdict is XdpAction.DROP
        maps["verdict"].update_batch_raw((0).to_bytes(4, "little"),
                                         int(XdpAction.PASS).to_bytes(4, "little"))
        assert prog.run_packet(FRAME).verdict is XdpAction.PASS


def test_global_variables_read_and_write(backend: Backend) -> None:
    spec = load_object(OBJ / "global_data.o")
    set_variable(spec, "ret_action", int(XdpAction.DROP))
    with backend.load(spec) as coll:
        prog = coll.programs["global_data"]
        var = coll.variables
        assert var["packets"].value == 5 and var["magic"].value == 0x1122334455667788
        assert prog.run_packet(FRAME).verdict is XdpAction.DROP
        assert var["packets"].value == 6
        assert var["last_len"].value == len(FRAME)
        assert var["seen_magic"].value == 0x1122334455667788
        var["packets"].value = 100                 # .data from Python, the program adds 1
        var["last_len"].value = 7                  # its neighbour in .bss is untouched
        assert var["seen_magic"].value == 0x1122334455667788
        prog.run_packet(FRAME)
        assert var["packets"].value == 101
        with pytest.raises(MapError, match="frozen"):
            var["ret_action"].value = 2
        with pytest.raises(ValueError, match="bytes"):
            var["last_len"].raw = b"\x01"


def test_prog_array_slots_and_tail_calls(backend: Backend) -> None:
    spec = load_object(OBJ / "tail_call.o")
    with backend.load(spec) as coll:
        res = coll.programs["tail_entry"].run_packet(FRAME)
        assert res.verdict is XdpAction.TX           # slot 2 filled from .maps at load
        assert coll.variables["tail_ran"].value == 1
        assert coll.maps["jump_table"].type == MapType.PROG_ARRAY


def test_pins_by_name_are_shared_between_loads(backend: Backend, pin_path: str) -> None:
    obj = _counting_object(pinned=True)
    with backend.load(obj, pin_path=pin_path) as first:
        first.programs["xdp_count"].run_packet(FRAME)
        with backend.load(copy.deepcopy(obj), pin_path=pin_path) as second:
            second.programs["xdp_count"].run_packet(FRAME)
            assert sum(second.maps["counters"][0]) == 2   # one map, counted by both
            assert sum(first.maps["counters"][0]) == 2
    # the pin outlives both collections
    with backend.load(copy.deepcopy(obj), pin_path=pin_path) as third:
        assert sum(third.maps["counters"][0]) == 2
    # without a pin path a BY_NAME map is an ordinary, fresh map
    with backend.load(copy.deepcopy(obj)) as plain:
        assert sum(plain.maps["counters"][0]) == 0


def test_pin_with_another_layout_is_refused_and_nothing_is_left(backend: Backend,
                                                                pin_path: str) -> None:
    obj = _counting_object(pinned=True)
    with backend.load(obj, pin_path=pin_path):
        pass
    other = _counting_object(pinned=True)
    other.maps["counters"].max_entries = 4
    extra = MapSpec("extra", MapType.HASH, 4, 4, 8, pinning=LIBBPF_PIN_BY_NAME)
    other.maps = {"extra": extra, **other.maps}       # created (and pinned) first
    with pytest.raises(MapError, match="max_entries"):
        backend.load(other, pin_path=pin_path)
    # the failed load took back the pin it made; the old pin is still there
    again = _counting_object(pinned=True)
    again.maps = {"extra": MapSpec("extra", MapType.HASH, 4, 8, 8,
                                   pinning=LIBBPF_PIN_BY_NAME), **again.maps}
    with backend.load(again, pin_path=pin_path) as coll:   # value size 8 now: fresh pin
        assert coll.maps["extra"].spec.value_size == 8


def test_create_map_follows_the_map_protocol(backend: Backend) -> None:
    m = backend.create_map(MapSpec("h", MapType.HASH, 4, 8, 16))
    try:
        m[1] = 10
        assert m[1] == 10 and 1 in m and len(m) == 1
        with pytest.raises(KeyError):
            m[2]
        keys = b"".join(i.to_bytes(4, "little") for i in range(2, 6))
        values = b"".join((i * 100).to_bytes(8, "little") for i in range(2, 6))
        assert m.update_batch_raw(keys, values) == 4
        assert dict(m.items()) == {1: 10, 2: 200, 3: 300, 4: 400, 5: 500}
        with pytest.raises(MapError, match="elements"):
            m.update_batch_raw(keys[:-1], values)
        m.write_value_bytes((1).to_bytes(4, "little"), 1, b"\x01")
        assert m[1] == 10 + 256
    finally:
        m.close()


@pytest.mark.parametrize("flags", [0, 1 << 10], ids=["plain", "mmapable"])
def test_write_array_fills_consecutive_values(backend: Backend, flags: int) -> None:
    """``write_array``: one blob of values from an index (an mmapable kernel array is
    written through a shared mapping, any other by a batch update); the program sees
    them; a blob that is not whole values, or runs past the end, or a non-array, is a
    MapError naming the map."""
    m = backend.create_map(MapSpec("arr", MapType.ARRAY, 4, 8, 64, flags=flags))
    h = backend.create_map(MapSpec("h", MapType.HASH, 4, 8, 4))
    try:
        blob = b"".join((i * 3 + 1).to_bytes(8, "little") for i in range(10))
        assert m.write_array(blob, 5) == 10
        assert [m[i] for i in range(4, 16)] == [0] + [i * 3 + 1 for i in range(10)] + [0]
        assert m.write_array(memoryview(blob)[:16]) == 2 and (m[0], m[1]) == (1, 4)
        with pytest.raises(MapError, match="arr"):
            m.write_array(blob[:-1])
        with pytest.raises(MapError, match="arr"):
            m.write_array(blob, 60)
        with pytest.raises(MapError, match="not an ARRAY"):
            h.write_array(blob)
        assert m[60] == 0 and len(h) == 0
    finally:
        m.close()
        h.close()


def test_a_failed_load_reports_the_cause(backend: Backend) -> None:
    spec = load_object(OBJ / "tail_call.o")
    spec.map_slots["jump_table"][3] = "no_such_program"
    with pytest.raises(PyxdpError, match="no_such_program"):
        backend.load(spec)


def test_given_maps_are_used_and_left_open(backend: Backend) -> None:
    """``load(obj, maps={name: m})`` uses ``m`` for that map (libbpf's reuse_fd): two loads
    count into the one map, closing the collections leaves it usable; a name the object
    does not declare, or a map of another layout, is refused naming it."""
    spec = progs.counters_spec()
    shared = backend.create_map(spec)
    try:
        for _ in range(2):
            with backend.load(_counting_object(), maps={spec.name: shared}) as coll:
                assert coll.maps[spec.name] is shared
                coll.programs["xdp_count"].run_packet(FRAME)
        assert sum(shared[0]) == 2            # both loads counted here; still open
        with pytest.raises(MapError, match="does not declare"):
            backend.load(_counting_object(), maps={"nope": shared})
        other = backend.create_map(MapSpec("other", MapType.ARRAY, 4, 8, 3))
        try:
            with pytest.raises(MapError, match="max_entries|type"):
                backend.load(_counting_object(), maps={spec.name: other})
        finally:
            close = getattr(other, "close", None)
            if close:
                close()
    finally:
        close = getattr(shared, "close", None)
        if close:
            close()
