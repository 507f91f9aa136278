"""The kernel's BTF read lazily (pyxdp.btf._lazy) answers exactly what a full parse does,
and its index cache is used only when it is intact and of the same BTF."""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path

import pytest

from pyxdp.btf import Btf, load_vmlinux
from pyxdp.btf._lazy import LazyBtf, load_index, save_index
from pyxdp.btf._types import Kind
from pyxdp.elf import load_object
from pyxdp.errors import BtfError

pytestmark = pytest.mark.kernel
VMLINUX = "/sys/kernel/btf/vmlinux"
OBJ = os.path.join(os.path.dirname(__file__), "..", "data", "obj")


@pytest.fixture(scope="module")
def data() -> bytes:
    with open(VMLINUX, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def full(data) -> Btf:
    return Btf.parse(data)


def test_same_types_names_and_kinds_as_a_full_parse(data, full) -> None:
    lazy = LazyBtf(data)
    assert len(lazy.types) == len(full.types)
    rng = random.Random(7)
    ids = [*rng.sample(range(1, len(full.types)), 4000), 1, len(full.types) - 1]
    assert all(lazy.types[i] == full.types[i] for i in ids)
    names = sorted({full.types[i].name for i in ids if full.types[i].name})
    for n in names:
        assert lazy.find(n) == full.find(n), n
    for n in names[:400]:
        for k in (Kind.STRUCT, Kind.UNION, Kind.FUNC, Kind.TYPEDEF, Kind.INT, Kind.ENUM):
            assert lazy.find(n, k) == full.find(n, k), (n, k)
    flavoured = {n.split("___")[0] for n in full._names() if "___" in n}
    for n in flavoured:
        assert lazy.flavours(n) == full.flavours(n), n
    assert lazy.find("no_such_type_anywhere") == [] and lazy.flavours("no_such") == []
    assert lazy._names() == full._names()
    sk = lazy.by_name("sk_buff", Kind.STRUCT)[0]
    assert lazy.member_offset(sk, "len") == full.member_offset(sk, "len")
    assert lazy.size_of(sk) == full.size_of(sk)


def test_added_types_are_found(data) -> None:
    lazy = LazyBtf(data)
    t = copy.copy(lazy.types[lazy.by_name("sk_buff", Kind.STRUCT)[0]])
    t.name = "pyxdp_added_type"
    tid = lazy.add(t)
    assert lazy.find("pyxdp_added_type") == [tid] and lazy.types[tid] is t


@pytest.mark.parametrize("name", ["core.o", "core_many.o"])
def test_core_relocations_identical_to_a_full_parse(full, name) -> None:
    from pyxdp.btf import apply_core_relocations

    obj = load_object(os.path.join(OBJ, name))
    results = []
    for target in (full, load_vmlinux()):
        assert isinstance(load_vmlinux(), LazyBtf)
        prog = copy.copy(next(iter(obj.programs.values())))
        prog.instructions = list(prog.instructions)
        prog.map_refs = dict(prog.map_refs)
        apply_core_relocations(prog, obj.btf, target)
        results.append(prog.instructions)
    assert results[0] == results[1]
    assert len(obj.programs[next(iter(obj.programs))].core_relos) >= 5


def test_index_cache_round_trip_and_refusals(data, tmp_path) -> None:
    lazy = LazyBtf(data)
    path = str(tmp_path / "cache" / "btf.idx")
    save_index(path, lazy)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    idx = load_index(path, lazy.digest)
    assert idx is not None
    again = LazyBtf(data, idx)
    assert again._offsets == lazy._offsets and again._kinds == lazy._kinds
    assert again.find("task_struct") == lazy.find("task_struct")
    # another BTF's digest, a flipped byte, a torn file, garbage: never used
    assert load_index(path, "0" * 64) is None
    blob = bytearray(Path(path).read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (tmp_path / "flipped").write_bytes(bytes(blob))
    assert load_index(str(tmp_path / "flipped"), lazy.digest) is None
    (tmp_path / "torn").write_bytes(Path(path).read_bytes()[:1000])
    assert load_index(str(tmp_path / "torn"), lazy.digest) is None
    (tmp_path / "junk").write_bytes(os.urandom(5000))
    assert load_index(str(tmp_path / "junk"), lazy.digest) is None
    assert load_index(str(tmp_path / "missing"), lazy.digest) is None
    # an index that does not fit the data is refused by LazyBtf itself (digest check)
    other = dict(idx, digest="f" * 64)
    assert LazyBtf(data, other)._offsets == lazy._offsets      # rescanned, not trusted


def test_cache_dir_setting(monkeypatch, tmp_path) -> None:
    from pyxdp.btf import _vmlinux

    monkeypatch.setenv("PYXDP_CACHE_DIR", "off")
    assert _vmlinux.cache_dir() is None
    monkeypatch.setenv("PYXDP_CACHE_DIR", str(tmp_path))
    assert _vmlinux.cache_dir() == str(tmp_path)
    _vmlinux._cache.clear()
    try:
        btf = _vmlinux.load_vmlinux()
        files = os.listdir(tmp_path)
        assert len(files) == 1 and files[0].startswith("btf-")
        assert isinstance(btf, LazyBtf)
    finally:
        _vmlinux._cache.clear()


@pytest.mark.parametrize("cut", [3, 20, 100, 5000])
def test_truncated_or_garbled_btf_raises(data, cut) -> None:
    with pytest.raises(BtfError):
        LazyBtf(data[:cut])
    bad = bytearray(data)
    bad[24 + 4] = 0xFF          # the first type's info byte: kind 31 does not exist
    bad[24 + 7] = 0x1F
    with pytest.raises(BtfError):
        LazyBtf(bytes(bad))
