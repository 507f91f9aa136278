"""Hostile input: mutated real objects must only ever raise ElfError or BtfError."""

from __future__ import annotations

import contextlib
import glob
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyxdp.btf import Btf, BtfExt
from pyxdp.elf import load_object
from pyxdp.elf._reader import ElfReader
from pyxdp.errors import BtfError, ElfError

DATA = Path(__file__).parent.parent / "data" / "obj"
SEEDS = [p.read_bytes() for p in sorted(DATA.glob("*.o"))] + [
    Path(p).read_bytes() for p in sorted(glob.glob("/usr/lib/x86_64-linux-gnu/bpf/xdp*.o"))[:3]]
FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _regions(raw: bytes) -> list[tuple[int, int]]:
    """Byte ranges of every section with contents, so mutations land past the header."""
    try:
        r = ElfReader(raw)
    except ElfError:
        return [(0, len(raw))]
    return [(s.offset, s.offset + s.size) for s in r.sections if s.data] + [(0, len(raw))]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    seed = draw(st.sampled_from(seeds))
    data = bytearray(seed)
    lo, hi = draw(st.sampled_from(_regions(seed)))
    ops = ["flip", "byte", "word"] * 4 + ["truncate", "insert", "delete"]
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(ops))
        pos = min(lo + draw(st.integers(0, max(hi - lo - 1, 0))), max(len(data) - 1, 0))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "word" and len(data) >= pos + 4:
            data[pos:pos + 4] = draw(st.sampled_from(
                [b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\x00\x00\x00\x00",
                 b"\xff\xff\x00\x00", b"\x01\x00\x00\x00"]))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


def _check(raw: bytes) -> None:
    t = time.monotonic()
    try:
        load_object(raw)
    except (ElfError, BtfError) as e:
        assert str(e)
    assert time.monotonic() - t < 2


@FUZZ
@given(mutated(SEEDS))
def test_mutated_objects_raise_only_our_errors(raw: bytes) -> None:
    _check(raw)


def _btf_seeds() -> list[tuple[bytes, bytes]]:
    out = []
    for raw in SEEDS:
        r = ElfReader(raw)
        out.append((r.by_name[".BTF"].data, r.by_name[".BTF.ext"].data))
    return out


BTF_SEEDS = _btf_seeds()


@FUZZ
@given(st.sampled_from(range(len(BTF_SEEDS))), st.data())
def test_mutated_btf_raises_only_btferror(i: int, data: st.DataObject) -> None:
    btf_raw, ext_raw = BTF_SEEDS[i]
    raw = data.draw(mutated([btf_raw]))
    try:
        btf = Btf.parse(raw)
        btf.encode()
        for tid in range(1, len(btf)):
            with contextlib.suppress(BtfError):
                btf.size_of(tid)
        BtfExt.parse(data.draw(mutated([ext_raw])), btf)
    except BtfError as e:
        assert str(e)


def test_mutated_objects_targeted_fields() -> None:
    """Deterministic hostile values in every ELF header and section header field."""
    raw = (DATA / "tail_call.o").read_bytes()
    shoff = int.from_bytes(raw[0x28:0x30], "little")
    shnum = int.from_bytes(raw[0x3C:0x3E], "little")
    for sec in range(shnum):
        for field_off in range(0, 64, 4):
            for val in (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x00\x00\x40"):
                b = bytearray(raw)
                p = shoff + 64 * sec + field_off
                b[p:p + 4] = val
                _check(bytes(b))
