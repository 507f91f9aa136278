"""Load every committed test object with pyxdp's loader and run it (BPF_PROG_TEST_RUN)."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from pyxdp.btf import Kind, load_vmlinux
from pyxdp.elf import load_object, set_variable
from pyxdp.errors import MapError
from pyxdp.kernel.loader import load_collection

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "obj"
XDP_TOOLS = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/bpf/*.o"))
PKT = bytes(range(64))
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3


def spec(name: str):
    return load_object(OBJ / f"{name}.o")


@pytest.fixture
def pin_dir():
    path = f"/sys/fs/bpf/pyxdp-test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_btf_maps_and_pin_reuse(pin_dir: str) -> None:
    s = spec("btf_map")
    with load_collection(s, pin_path=pin_dir) as c:
        prog = c.programs["count_packets"]
        assert prog.test_run(PKT).retval == XDP_PASS
        assert prog.test_run(PKT).retval == XDP_PASS
        assert c.maps["counters"][7] == 2
        assert c.maps["pinned_stats"][7] == 4
        assert os.path.exists(f"{pin_dir}/pinned_stats")
        info = c.maps["counters"].info()
        assert info.btf_key_type_id == s.maps["counters"].key_type_id
        with load_collection(spec("btf_map"), pin_path=pin_dir) as c2:
            assert c2.maps["pinned_stats"].id == c.maps["pinned_stats"].id
            assert c2.maps["counters"].id != c.maps["counters"].id
            c2.programs["count_packets"].test_run(PKT)
            assert c.maps["pinned_stats"][7] == 6


def test_pinned_map_with_other_layout_is_refused(pin_dir: str) -> None:
    with load_collection(spec("btf_map"), pin_path=pin_dir):
        pass
    other = spec("btf_map")
    other.maps["pinned_stats"].max_entries = 16
    with pytest.raises(MapError, match="max_entries"):
        load_collection(other, pin_path=pin_dir)


def test_legacy_map() -> None:
    with load_collection(load_object(OBJ / "legacy_map.o", legacy=True)) as c:
        assert c.programs["legacy_prog"].test_run(PKT).retval == XDP_DROP
        assert c.maps["legacy_array"][1] == 1


def test_global_data_rodata_set_before_load() -> None:
    s = spec("global_data")
    set_variable(s, "ret_action", XDP_DROP)
    with load_collection(s) as c:
        res = c.programs["global_data"].test_run(PKT)
        assert res.retval == XDP_DROP
        v = c.variables
        assert v["packets"].value == 6
        assert v["last_len"].value == len(PKT)
        assert v["seen_magic"].value == 0x1122334455667788
        assert v["ret_action"].value == XDP_DROP
        v["packets"].value = 100
        c.programs["global_data"].test_run(PKT)
        assert v["packets"].value == 101
        with pytest.raises(MapError, match="frozen"):
            v["ret_action"].value = 2
        assert c.maps[".rodata"].info().name == "global_d.rodata"


def test_bpf_to_bpf_calls() -> None:
    with load_collection(spec("subprog")) as c:
        assert c.programs["call_twice"].test_run(PKT).retval == XDP_PASS
        # without a ctx the test run's packet arrives on loopback: ingress_ifindex 1
        assert c.variables["result"].value == (1 + 1 + 3) * 2
        c.programs["call_add3"].test_run(PKT)
        assert c.variables["result"].value == 13


def test_callback_bpf_loop() -> None:
    with load_collection(spec("callback")) as c:
        assert c.programs["loop_sum"].test_run(PKT).retval == XDP_PASS
        assert c.variables["total"].value == 45


def test_prog_array_tail_call() -> None:
    with load_collection(spec("tail_call")) as c:
        assert c.programs["tail_entry"].test_run(PKT).retval == XDP_TX
        assert c.variables["tail_ran"].value == 1


def test_map_in_map() -> None:
    with load_collection(spec("map_in_map")) as c:
        prog = c.programs["outer_lookup"]
        assert prog.test_run(PKT).retval == XDP_PASS
        c.maps["inner1"][0] = 1
        assert prog.test_run(PKT).retval == XDP_DROP


def _raw_tp_run(prog) -> int:
    """BPF_PROG_TEST_RUN for raw tracepoints, which takes no data, repeat or output."""
    from pyxdp.abi import Cmd
    from pyxdp.kernel import bpf
    from pyxdp.kernel._sys import TestRunAttr
    ctx = ctypes.create_string_buffer(8)
    attr = TestRunAttr(prog_fd=prog.fd.fileno(), ctx_size_in=8,
                       ctx_in=ctypes.addressof(ctx))
    bpf(Cmd.PROG_TEST_RUN, attr)
    return attr.retval


def test_core_against_running_kernel() -> None:
    vm = load_vmlinux()
    task, _ = vm.by_name("task_struct", Kind.STRUCT)
    buff, _ = vm.by_name("xdp_buff", Kind.STRUCT)
    with load_collection(spec("core")) as c:
        assert _raw_tp_run(c.programs["core_read"]) == 0
        v = c.variables
        assert v["tgid_seen"].value == os.getpid()
        assert v["data_end_off"].value == vm.member_offset(buff, "data_end")[0] // 8
        assert v["buff_size"].value == vm.size_of(buff)
        assert v["missing_exists"].value == 0
        assert v["pass_value"].value == XDP_PASS
        assert any(r.new == vm.member_offset(task, "tgid")[0] // 8
                   for r in c.core_results["core_read"])


def test_frags_and_devmap_programs() -> None:
    with load_collection(spec("frags")) as c:
        assert c.programs["frags_prog"].test_run(PKT).retval == XDP_PASS
        assert c.programs["devmap_prog"].info().type == 6


def test_multiple_programs_in_one_section() -> None:
    with load_collection(spec("multi")) as c:
        got = {n: p.test_run(PKT).retval for n, p in c.programs.items()}
        assert got == {"first_pass": XDP_PASS, "second_drop": XDP_DROP, "third_tx": XDP_TX}


def _bpftool_loads(path: str, pin: str) -> bool:
    """Whether ``bpftool prog loadall`` accepts the object.  libbpf auto-pins maps declared
    ``pinning = BY_NAME`` under /sys/fs/bpf: remove exactly those pins again."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed")
    by_name = [m.name for m in load_object(path).maps.values() if m.pinning == 1]
    before = {n for n in by_name if os.path.exists(f"/sys/fs/bpf/{n}")}
    r = subprocess.run(["bpftool", "prog", "loadall", path, pin], capture_output=True,
                       timeout=60)
    shutil.rmtree(pin, ignore_errors=True)
    for n in set(by_name) - before:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/sys/fs/bpf/{n}")
    return r.returncode == 0


@pytest.mark.skipif(not XDP_TOOLS, reason="xdp-tools objects not installed")
@pytest.mark.parametrize("path", XDP_TOOLS, ids=os.path.basename)
def test_xdp_tools_objects_load_like_bpftool(path: str) -> None:
    pin = f"/sys/fs/bpf/pyxdp-bpftool-{uuid.uuid4().hex[:8]}"
    if not _bpftool_loads(path, pin):
        with pytest.raises(Exception):   # noqa: B017 - we only claim parity, not more
            load_collection(load_object(path)).close()
        return
    with load_collection(load_object(path)) as c:
        assert c.programs
        for p in c.programs.values():
            assert p.id > 0


def test_failed_load_closes_everything() -> None:
    s = spec("global_data")
    s.programs["global_data"].instructions.pop()          # no exit: the verifier says no
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(Exception, match="global_data"):
        load_collection(s)
    assert set(os.listdir("/proc/self/fd")) <= before | {str(x) for x in range(3)}
    assert struct.calcsize("<I") == 4
