# mypy: disable-error-code="valid-type"
# (field annotations are dialect types, IntType objects such as be16 or u8[6] that Struct
# evaluates at class creation; mypy accepts only classes there, and reads these fields as Any)
"""Struct declarations: typed fields with C layout, usable in programs and as map types."""

from __future__ import annotations

import inspect
import sys
from typing import Any

from pyxdp.compiler.types import (
    ArrayType,
    BitField,
    IntType,
    StructType,
    Type,
    be16,
    be32,
    u8,
    u16,
    u32,
)


class Struct:
    """Declare a struct with typed fields; the same class is the control plane's value type.

    ::

        class FlowKey(Struct):
            saddr: be32
            dport: u16

    Inside a program ``FlowKey()`` is a zeroed struct on the stack; in Python it is a plain
    object with attributes (and ``FlowKey.codec()`` converts it to and from map bytes).
    """

    __pyxdp_type__: StructType
    _packed_: bool = False
    _bits_: dict[str, tuple[str, int, int]] = {}
    # header length: (field, multiplier, addend, minimum) or None for the fixed size
    _hdrlen_: tuple[str, int, int] | None = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        mod = sys.modules.get(cls.__module__)
        env = dict(vars(mod)) if mod else {}
        fields: list[tuple[str, Type]] = []
        for fname, ann in inspect.get_annotations(cls).items():
            t = eval(ann, env) if isinstance(ann, str) else ann
            if isinstance(t, type) and issubclass(t, Struct):
                t = t.__pyxdp_type__
            if not isinstance(t, Type):
                raise TypeError(f"{cls.__name__}.{fname}: {t!r} is not a pyxdp type"
                                " (use u8..u64, i8..i64, be16/be32/be64, u8[N] or a Struct)")
            fields.append((fname, t))
        bits = {k: BitField(*v) for k, v in cls._bits_.items()}
        _check_layout(cls.__name__, dict(fields), bits, cls._hdrlen_)
        cls.__pyxdp_type__ = StructType(cls.__name__, fields, cls._packed_, bits, cls)

    def __init__(self, **values: Any) -> None:
        st = type(self).__pyxdp_type__
        for fname, (_off, ftype) in st.fields.items():
            default: Any = ftype() if isinstance(ftype, ArrayType) else 0
            if isinstance(ftype, StructType):
                default = ftype.cls()
            setattr(self, fname, values.pop(fname, default))
        if values:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(values)}")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(self) == vars(other)

    def __hash__(self) -> int:
        """By value, like a tuple of the fields, so keys and values read back from a map
        can be dict keys and set members (don't change a struct while it is one)."""
        return hash((type(self), tuple(_frozen(v) for v in vars(self).values())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({inner})"

    @classmethod
    def codec(cls) -> Any:
        from pyxdp.compiler.codecs import StructCodec
        return StructCodec(cls.__pyxdp_type__)


def _frozen(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, bytearray | memoryview):
        return bytes(v)
    return v


def _check_layout(name: str, fields: dict[str, Type], bits: dict[str, BitField],
                  hdrlen: tuple[str, int, int] | None) -> None:
    """``_bits_`` must carve integer fields and ``_hdrlen_`` name one (the compiler relies
    on both; a typo used to surface as a KeyError or AttributeError inside it)."""
    for bname, bf in bits.items():
        base = fields.get(bf.base)
        if not isinstance(base, IntType):
            raise TypeError(f"{name}._bits_[{bname!r}]: {bf.base!r} is not an integer field"
                            f" of {name}")
        if bf.width < 1 or bf.shift < 0 or bf.shift + bf.width > base.bits:
            raise TypeError(f"{name}._bits_[{bname!r}]: bits {bf.shift}..+{bf.width} do not"
                            f" fit the {base.bits}-bit field {bf.base!r}")
    if hdrlen is not None and hdrlen[0] not in bits and not isinstance(
            fields.get(hdrlen[0]), IntType):
        raise TypeError(f"{name}._hdrlen_: {hdrlen[0]!r} is not an integer or bit field"
                        f" of {name}")


class LpmKey4(Struct):
    """Key of an IPv4 LPM trie: prefix length in bits, then the address (network order)."""

    prefixlen: u32
    addr: be32


class LpmKey6(Struct):
    prefixlen: u32
    addr: u8[16]


class SpinLock(Struct):
    """``struct bpf_spin_lock``: a field of a map value, taken with ``with v.lock:``.
    Programs never read or write it otherwise (the verifier forbids direct access)."""

    _spin_lock_ = True
    val: u32


class FibParams(Struct):
    """``struct bpf_fib_lookup`` (64 bytes) for ``fib_lookup``."""

    family: u8
    l4_protocol: u8
    sport: be16
    dport: be16
    tot_len: u16
    ifindex: u32
    tos: u32
    ipv4_src: be32
    ipv4_src_pad: u8[12]
    ipv4_dst: be32
    ipv4_dst_pad: u8[12]
    vlan_proto: be16
    vlan_tci: be16
    smac: u8[6]
    dmac: u8[6]


