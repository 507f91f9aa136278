"""Control-plane codecs built from the same declarations the program uses.

A :class:`StructCodec` converts a :class:`~pyxdp.compiler.structs.Struct` instance (or a
dict/tuple of field values, or raw bytes) to map bytes and back, honouring ``be*`` fields,
so ``stats[FlowKey(saddr=ip4("10.0.0.1"))]`` means what the program sees.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from pyxdp.abi import MapType
from pyxdp.compiler.lang import MapDecl
from pyxdp.compiler.types import ArrayType, IntType, StructType, Type
from pyxdp.errors import MapError
from pyxdp.maps import Codec, IntCodec, LpmKeyCodec, MapBase

MapT = TypeVar("MapT", bound=MapBase)


def _encode(t: Type, value: Any) -> bytes:
    if isinstance(t, IntType):
        v = t.host.wrap(int(value)) & ((1 << t.bits) - 1)
        return v.to_bytes(t.size, "big" if t.be else "little")
    if isinstance(t, ArrayType):
        if isinstance(value, bytes | bytearray):
            raw = bytes(value)
            if len(raw) != t.size:
                raise MapError(f"{t.name} needs {t.size} bytes, got {len(raw)}")
            return raw
        return b"".join(_encode(t.elem, v) for v in value)
    assert isinstance(t, StructType)
    return StructCodec(t).encode(value)


def _decode(t: Type, data: bytes) -> Any:
    if isinstance(t, IntType):
        v = int.from_bytes(data, "big" if t.be else "little")
        return t.host.wrap(v)
    if isinstance(t, ArrayType):
        if t.elem.size == 1:
            return bytes(data)
        n = t.elem.size
        return [_decode(t.elem, data[i * n:(i + 1) * n]) for i in range(t.n)]
    assert isinstance(t, StructType)
    return StructCodec(t).decode(data)


class StructCodec(Codec):
    def __init__(self, st: StructType) -> None:
        self.st = st
        self.size = st.size

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray) and len(value) == self.size:
            return bytes(value)
        if isinstance(value, tuple):
            value = dict(zip(self.st.fields, value))
        get: Callable[[str, Any], Any]
        if isinstance(value, dict):
            get = value.get
        else:
            get = partial(getattr, value)       # get(name, default)
        out = bytearray(self.size)
        for name, (off, ft) in self.st.fields.items():
            v = get(name, None)
            if v is None:
                continue
            out[off:off + ft.size] = _encode(ft, v)
        return bytes(out)

    def decode(self, data: bytes) -> Any:
        vals = {name: _decode(ft, bytes(data[off:off + ft.size]))
                for name, (off, ft) in self.st.fields.items()}
        if self.st.cls is not None:
            return self.st.cls(**vals)
        return vals


def codec_for(t: Any, size: int) -> Codec | None:
    """The codec for a declared key or value type (None: leave the map's default)."""
    if t is None or size == 0:
        return None
    if isinstance(t, type) and hasattr(t, "__pyxdp_type__"):
        t = t.__pyxdp_type__
    if isinstance(t, IntType):
        if t.be:
            return StructCodec(StructType("be", [("v", t)]))
        return IntCodec(t.size, t.signed)
    if isinstance(t, StructType):
        return StructCodec(t)
    return None


def apply_codecs(m: MapT, decl: MapDecl) -> MapT:
    """Give a kernel or emulator map the key/value codecs of its declaration (in place)."""
    if decl.map_type == MapType.LPM_TRIE:
        m.key_codec = LpmKeyCodec(m.spec.key_size)
    else:
        kc = codec_for(decl.key, m.spec.key_size)
        if kc is not None:
            m.key_codec = kc
    vc = codec_for(decl.value, m.spec.value_size)
    if vc is not None:
        m.value_codec = vc
    return m
