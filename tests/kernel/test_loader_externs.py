"""kfuncs, __ksym variables, .kconfig externs, perf event arrays without max_entries and
__ulong(map_extra): loaded as libbpf loads them, with equal kernel tags (issue 10)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from libbpf_ref import bpftool_loadall

from pyxdp.elf import load_object
from pyxdp.errors import BpfError, EmulatorError, VerifierError
from pyxdp.isa import CallSrc
from pyxdp.kernel import load_collection
from pyxdp.kernel._externs import kernel_version, read_kconfig
from pyxdp.kernel._sys import possible_cpus

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "obj"
XDP_DROP, XDP_PASS = 1, 2


def _tags(name: str) -> tuple[dict[str, str], dict[str, int]]:
    with load_collection(load_object(OBJ / f"{name}.o")) as c:
        return ({n: p.tag for n, p in c.programs.items()},
                {n: p.test_run(bytes(64)).retval for n, p in c.programs.items()})


@pytest.mark.parametrize("name", ["kfunc", "ksym_addr", "kconfig", "perf_array"])
def test_same_tags_as_bpftool(name: str, pin_dir: str) -> None:
    ref = bpftool_loadall(str(OBJ / f"{name}.o"), pin_dir)
    assert ref.ok, ref.reason
    tags, _ = _tags(name)
    assert tags == ref.tags


def test_kfunc_calls_are_patched_with_vmlinux_btf_ids() -> None:
    s = load_object(OBJ / "kfunc.o")
    p = s.programs["kfunc_prog"]
    assert sorted(p.extern_refs.values()) == ["bpf_dynptr_from_xdp", "bpf_dynptr_slice"]
    assert {s.externs[n].kind for n in p.extern_refs.values()} == {"kfunc"}
    with load_collection(s) as c:
        prog = c.programs["kfunc_prog"]
        assert prog.test_run(b"\x42" + bytes(63)).retval == XDP_DROP
        assert prog.test_run(bytes(64)).retval == XDP_PASS
        calls = [i for i in prog.instructions if i.opcode == 0x85 and i.src == CallSrc.KFUNC]
        assert len(calls) == 2 and all(i.imm > 0 for i in calls)


def test_typeless_ksym_is_the_kallsyms_address() -> None:
    with open("/proc/kallsyms") as f:
        want = next(int(ln.split()[0], 16) for ln in f if ln.split()[2] == "_stext")
    with load_collection(load_object(OBJ / "ksym_addr.o")) as c:
        c.programs["ksym_addr"].test_run(bytes(64))
        assert c.variables["out_addr"].value == want


def test_typed_ksym_gets_btf_id_and_the_same_verdict_as_libbpf(pin_dir: str) -> None:
    s = load_object(OBJ / "ksym_var.o")
    assert s.externs["runqueues"].kind == "ksym" and s.externs["runqueues"].type_id
    ref = bpftool_loadall(str(OBJ / "ksym_var.o"), pin_dir)
    try:
        with load_collection(s) as c:
            assert ref.ok, "pyxdp loaded what libbpf could not"
            assert c.programs["ksym_prog"].tag == ref.tags["ksym_prog"]
    except VerifierError as e:
        # a kernel without CONFIG_KALLSYMS_ALL cannot find the variable's address; libbpf
        # gets the same refusal: a fact of this kernel, the instruction was right
        assert not ref.ok
        assert "failed to find the address for kernel symbol 'runqueues'" in e.log
        assert "runqueues" in ref.stderr


def test_kconfig_values_come_from_the_running_kernel() -> None:
    cfg = read_kconfig()
    with load_collection(load_object(OBJ / "kconfig.o")) as c:
        c.programs["kconfig_prog"].test_run(bytes(64))
        raw = c.variables["out"].value
        out = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, 40, 8)]
        assert out[0] == kernel_version()
        assert out[1] == (cfg.get("CONFIG_BPF_SYSCALL") == "y")
        assert out[2] == {"y": 1, "m": 2}.get(cfg.get("CONFIG_IPV6", "n"), 0)
        assert out[3] == int(cfg["CONFIG_HZ"])
        assert out[4] == 0                                  # weak and unset
        host = cfg["CONFIG_DEFAULT_HOSTNAME"].strip('"').encode()
        assert c.variables["out_host"].value.rstrip(b"\0") == host
        info = c.maps[".kconfig"].info()
        assert info.flags == (1 << 7) | (1 << 10)           # RDONLY_PROG | MMAPABLE
        assert c.btf_fd is not None                          # the rewritten BTF loads


def test_kconfig_layout_is_libbpfs() -> None:
    e = load_object(OBJ / "kconfig.o").externs
    assert {n: x.offset for n, x in e.items()} == {
        "CONFIG_HZ": 0, "CONFIG_IPV6": 4, "CONFIG_PYXDP_NO_SUCH_OPTION": 8,
        "LINUX_KERNEL_VERSION": 12, "CONFIG_BPF_SYSCALL": 16, "CONFIG_DEFAULT_HOSTNAME": 17}


def test_perf_event_array_gets_one_slot_per_possible_cpu() -> None:
    s = load_object(OBJ / "perf_array.o")
    assert s.maps["events"].max_entries == 0
    with load_collection(s) as c:
        assert c.maps["events"].info().max_entries == possible_cpus()


def test_ulong_map_extra(pin_dir: str) -> None:
    s = load_object(OBJ / "map_extra.o")
    assert (s.maps["bloom"].map_extra, s.maps["bloom5"].map_extra) == (3, 5)
    with load_collection(s) as c:
        assert c.maps["bloom"].info().map_extra == 3
        assert c.maps["bloom5"].info().map_extra == 5
        assert c.programs["bloom_prog"].test_run(bytes(64)).retval == XDP_PASS
    a = load_object(OBJ / "arena.o")
    assert a.maps["arena"].map_extra == 0x40000000
    try:
        with load_collection(a) as c:
            assert c.maps["arena"].info().map_extra == 0x40000000
    except BpfError as e:
        if e.errno != errno.EPERM:
            raise
        assert "map 'arena'" in str(e) and "map_extra 0x40000000" in str(e)


def test_emulator_refuses_externs_by_name() -> None:
    from pyxdp.emu.backend import EmuBackend
    with pytest.raises(EmulatorError, match="bpf_dynptr_from_xdp"):
        EmuBackend().load(load_object(OBJ / "kfunc.o"))


