"""What the ELF reader accepts is what libbpf 1.x accepts (issue 10): static maps, the legacy
``maps`` section and section names, iproute2 map fields, licenses, unresolved externs.
Each case is a small object built from C in tests/data/c."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyxdp.abi import AttachType, MapType, ProgType
from pyxdp.elf import classify_section, load_object
from pyxdp.elf._reader import ElfReader
from pyxdp.errors import ElfError
from pyxdp.spec import MapRef

OBJ = Path(__file__).parent.parent / "data" / "obj"


def _patched_map_def(name: str, offset: int, value: int) -> bytes:
    """``name``.o with the u32 at ``offset`` of its first 'maps' definition replaced."""
    data = bytearray((OBJ / f"{name}.o").read_bytes())
    sec = ElfReader(bytes(data)).by_name["maps"]
    struct.pack_into("<I", data, sec.offset + offset, value)
    return bytes(data)


def test_static_btf_maps_are_refused_like_libbpf() -> None:
    # libbpf: "map 'first': unsupported map linkage static."  Before, both references
    # bound to the map at offset 0 of .maps: updates meant for 'second' hit 'first'
    with pytest.raises(ElfError, match=r"map 'first': unsupported map linkage static"):
        load_object(OBJ / "static_maps.o")


def test_legacy_maps_section_is_refused_by_default_with_the_reason() -> None:
    with pytest.raises(ElfError) as ei:
        load_object(OBJ / "legacy_map.o")
    msg = str(ei.value)
    assert "'legacy_array'" in msg
    assert "legacy map definitions in 'maps' section are not supported by libbpf v1.0+" in msg
    assert "legacy=True" in msg


def test_legacy_static_maps_bind_by_offset() -> None:
    s = load_object(OBJ / "legacy_static_maps.o", legacy=True)
    refs = s.programs["legacy_static"].map_refs
    # in source order: the first lookup is 'first', the second 'second' (both relocations
    # are against the section symbol; only the addend tells them apart)
    assert [refs[i] for i in sorted(refs)] == [MapRef("first"), MapRef("second")]
    assert {n: (m.type, m.key_size, m.value_size, m.max_entries) for n, m in s.maps.items()} \
        == {"first": (MapType.ARRAY, 4, 8, 1), "second": (MapType.ARRAY, 4, 8, 1)}


def test_legacy_map_section_with_legacy_flag() -> None:
    s = load_object(OBJ / "legacy_map.o", legacy=True)
    m = s.maps["legacy_array"]
    assert (m.type, m.key_size, m.value_size, m.max_entries) == (MapType.ARRAY, 4, 8, 2)
    assert list(s.programs["legacy_prog"].map_refs.values()) == [MapRef("legacy_array")]


def test_iproute2_pinning_is_refused_by_name_not_dropped() -> None:
    with pytest.raises(ElfError) as ei:
        load_object(OBJ / "legacy_iproute2.o", legacy=True)
    msg = str(ei.value)
    assert "legacy map 'tc_counts'" in msg and "'pinning'" in msg
    assert "is 2 (PIN_GLOBAL_NS)" in msg and "iproute2 pinning is not supported" in msg


@pytest.mark.parametrize("offset,field", [(20, "id"), (28, "inner_id"), (32, "inner_idx")])
def test_other_nonzero_iproute2_fields_are_refused(offset: int, field: str) -> None:
    data = _patched_map_def("legacy_iproute2", 24, 0)          # pinning off ...
    data = bytearray(data)
    sec = ElfReader(bytes(data)).by_name["maps"]
    struct.pack_into("<I", data, sec.offset + offset, 5)       # ... another field on
    with pytest.raises(ElfError, match=rf"iproute2 field '{field}' .* is 5"):
        load_object(bytes(data), legacy=True)


def test_iproute2_definition_with_zero_extras_loads_as_bpf_map_def() -> None:
    s = load_object(_patched_map_def("legacy_iproute2", 24, 0), legacy=True)
    m = s.maps["tc_counts"]
    assert (m.type, m.key_size, m.value_size, m.max_entries, m.pinning) == (
        MapType.ARRAY, 4, 8, 1, 0)
    assert s.programs["iproute2_prog"].type == ProgType.SCHED_CLS


def test_legacy_section_names_need_legacy_or_a_forced_type() -> None:
    assert load_object(OBJ / "legacy_section.o").programs["legacy_section"].type \
        == ProgType.UNSPEC                                       # loading refuses it
    assert classify_section("xdp_prog").type == ProgType.UNSPEC
    k = classify_section("xdp_prog", legacy=True)
    assert (k.type, k.expected_attach_type) == (ProgType.XDP, AttachType.XDP)
    p = load_object(OBJ / "legacy_section.o", legacy=True).programs["legacy_section"]
    assert (p.type, p.expected_attach_type) == (ProgType.XDP, AttachType.XDP)
    p = load_object(OBJ / "legacy_section.o", prog_type="xdp").programs["legacy_section"]
    assert (p.type, p.expected_attach_type, p.section) == (ProgType.XDP, AttachType.XDP,
                                                           "xdp_prog")
    with pytest.raises(ValueError, match="prog_type 'nonsense' is not a known section name"):
        load_object(OBJ / "legacy_section.o", prog_type="nonsense")


def test_forced_type_applies_to_every_program_like_bpftool() -> None:
    s = load_object(OBJ / "multi.o", prog_type="tc")
    assert s.programs and all(p.type == ProgType.SCHED_CLS for p in s.programs.values())


def test_object_without_license_is_not_gpl() -> None:
    s = load_object(OBJ / "no_license.o")
    assert s.license == ""
    assert {p.license for p in s.programs.values()} == {""}
    assert load_object(OBJ / "btf_map.o").license == "GPL"


def test_unresolved_function_says_it_needs_linking() -> None:
    with pytest.raises(ElfError) as ei:
        load_object(OBJ / "unresolved_func.o")
    msg = str(ei.value)
    assert "program 'needs_link' calls 'defined_elsewhere'" in msg
    assert "link the objects first" in msg
    assert ".kconfig" not in msg


def test_enotsupp_and_eperm_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyxdp import errors
    e = errors.BpfError(524, "BPF_PROG_TEST_RUN")
    assert "ENOTSUPP (not supported by this kernel)" in str(e) and "Unknown" not in str(e)
    monkeypatch.setattr(errors, "_effective_caps", lambda: 1 << 39)     # CAP_BPF held
    held = str(errors.BpfError(1, "BPF_PROG_LOAD"))
    assert "root" not in held and "security policy" in held
    monkeypatch.setattr(errors, "_effective_caps", lambda: 0)
    assert "needs root or CAP_BPF" in str(errors.BpfError(1, "BPF_PROG_LOAD"))
