"""Loading what libbpf loads, and refusing what it refuses, with the reason (issue 10).

Each object is a small C file in tests/data/c; where libbpf's verdict matters, bpftool
loads the same object and both verdicts (and kernel tags) are compared.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from kinsns import EXIT, mov_imm
from libbpf_ref import bpftool_loadall

from pyxdp.abi import ProgType
from pyxdp.elf import load_object
from pyxdp.errors import BpfError, ElfError, VerifierError
from pyxdp.kernel import Program, load_collection

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "obj"
PKT = bytes(range(64))
XDP_DROP, XDP_PASS = 1, 2


def test_static_maps_refused_by_both(pin_dir: str) -> None:
    ref = bpftool_loadall(str(OBJ / "static_maps.o"), pin_dir)
    assert not ref.ok and "map 'first': unsupported map linkage static" in ref.reason
    with pytest.raises(ElfError, match="map 'first': unsupported map linkage static"):
        load_object(OBJ / "static_maps.o")


def test_legacy_static_maps_update_the_map_the_source_names() -> None:
    s = load_object(OBJ / "legacy_static_maps.o", legacy=True)
    with load_collection(s) as c:
        assert c.programs["legacy_static"].test_run(PKT).retval == XDP_PASS
        # the old bug: both lookups bound to 'first' (offset 0): first == 101, second == 0
        assert (c.maps["first"][0], c.maps["second"][0]) == (1, 100)


def test_legacy_objects_refused_by_both_by_default(pin_dir: str) -> None:
    for name in ("legacy_map", "legacy_static_maps", "legacy_iproute2"):
        ref = bpftool_loadall(str(OBJ / f"{name}.o"), pin_dir)
        assert not ref.ok and "legacy map definitions in 'maps' section" in ref.reason, name
        with pytest.raises(ElfError, match="legacy map definitions in 'maps' section"):
            load_object(OBJ / f"{name}.o")


def test_unknown_section_names_program_and_section_and_how_to_force(pin_dir: str) -> None:
    path = str(OBJ / "legacy_section.o")
    ref = bpftool_loadall(path, pin_dir)
    assert not ref.ok and "failed to guess program type from ELF section 'xdp_prog'" in (
        ref.reason)
    with pytest.raises(ElfError) as ei:
        load_collection(load_object(path))
    msg = str(ei.value)
    assert "program 'legacy_section': failed to guess program type from ELF section" \
        " 'xdp_prog'" in msg
    assert "prog_type='xdp'" in msg
    forced = bpftool_loadall(path, pin_dir, prog_type="xdp")
    assert forced.ok, forced.stderr
    with load_collection(load_object(path, prog_type="xdp")) as c:
        p = c.programs["legacy_section"]
        assert p.test_run(PKT).retval == XDP_DROP
        assert p.tag == forced.tags["legacy_section"]


def test_no_license_loads_as_not_gpl_like_libbpf(pin_dir: str) -> None:
    ref = bpftool_loadall(str(OBJ / "no_license.o"), pin_dir)
    assert not ref.ok and "GPL" in ref.stderr      # the verifier refuses the GPL-only helper
    s = load_object(OBJ / "no_license.o")
    with pytest.raises(VerifierError) as ei:
        load_collection(s)
    assert ei.value.program == "no_license_printk"
    assert "cannot call GPL-restricted function from non-GPL compatible program" in (
        ei.value.log)
    del s.programs["no_license_printk"]
    with load_collection(s) as c:
        assert c.programs["no_license_plain"].info().gpl_compatible is False


def test_failed_map_creation_names_the_map(pin_dir: str) -> None:
    ref = bpftool_loadall(str(OBJ / "bad_map.o"), pin_dir)
    assert not ref.ok and "map 'refused_map': failed to create" in ref.reason
    with pytest.raises(BpfError) as ei:
        load_collection(load_object(OBJ / "bad_map.o"))
    assert ei.value.errno == errno.EINVAL
    msg = str(ei.value)
    assert "map 'refused_map': failed to create (ARRAY, key_size 4, value_size 8," \
        " max_entries 1, map_flags 0x40000000)" in msg
    assert ei.value.command == "BPF_MAP_CREATE"


def test_freplace_without_target_says_so_not_root() -> None:
    with pytest.raises(ElfError) as ei:
        load_collection(load_object(OBJ / "freplace.o"))
    msg = str(ei.value)
    assert "program 'new_sub'" in msg and "freplace" in msg
    assert "attach program FD is not set" in msg
    assert "root" not in msg and "CAP_BPF" not in msg


def test_enotsupp_is_named() -> None:
    """A kprobe program has no BPF_PROG_TEST_RUN: the kernel answers ENOTSUPP (524)."""
    try:
        prog = Program.load([mov_imm(0, 0), EXIT], type=ProgType.KPROBE)
    except BpfError as e:
        if e.errno == errno.EPERM:
            pytest.skip("this machine refuses kprobe programs (EPERM): a policy")
        raise
    with prog, pytest.raises(BpfError) as ei:
        prog.test_run(PKT)
    assert ei.value.errno == 524
    assert "ENOTSUPP (not supported by this kernel)" in str(ei.value)
    assert "Unknown error" not in str(ei.value)
