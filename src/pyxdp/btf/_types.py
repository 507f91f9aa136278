"""The BTF type model: one mutable :class:`BtfType` per type id.

BTF has twenty kinds whose trailing data differ; rather than twenty classes we keep one
record with the few kind-specific lists and scalars, because sanitizing (rewriting one kind
into another, as libbpf does for old kernels) is then a matter of changing fields in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Kind(IntEnum):
    """``BTF_KIND_*`` values (``info`` bits 24-28)."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class IntEncoding:
    """Bits of ``BTF_INT_ENCODING``."""

    SIGNED = 1
    CHAR = 2
    BOOL = 4


class Linkage(IntEnum):
    """Linkage of FUNC (``vlen``) and VAR (trailing ``u32``) types."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


#: Kinds that only wrap another type without changing its layout.
MODIFIERS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})
#: Kinds whose third header word is a size (the rest reference a type there).
SIZED = frozenset({Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.DATASEC, Kind.FLOAT,
                   Kind.ENUM64})


@dataclass
class Member:
    """A STRUCT/UNION member; ``bit_offset`` from the start, ``bitfield_size`` 0 if none."""

    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass
class Param:
    """A FUNC_PROTO parameter (an unnamed ``type`` 0 last parameter means ``...``)."""

    name: str
    type: int


@dataclass
class EnumValue:
    name: str
    value: int


@dataclass
class VarSecinfo:
    """One variable of a DATASEC: the VAR type id, its byte offset and size."""

    type: int
    offset: int
    size: int


@dataclass
class BtfType:
    """One BTF type.  Which fields matter depends on ``kind``:

    * ``size``: INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT
    * ``type``: PTR, TYPEDEF, qualifiers, TYPE_TAG, FUNC (its proto), FUNC_PROTO (return),
      VAR, DECL_TAG (the tagged type)
    * ``encoding``/``int_offset``/``bits``: INT;  ``elem_type``/``index_type``/``nelems``: ARRAY
    * ``members``: STRUCT/UNION;  ``params``: FUNC_PROTO;  ``values``: ENUM/ENUM64;
      ``secinfos``: DATASEC;  ``linkage``: FUNC, VAR;  ``component_idx``: DECL_TAG
    * ``kind_flag``: bitfield layout (STRUCT/UNION), union forward (FWD), signed (ENUM*)
    """

    kind: Kind
    name: str = ""
    size: int = 0
    type: int = 0
    kind_flag: bool = False
    encoding: int = 0
    int_offset: int = 0
    bits: int = 0
    elem_type: int = 0
    index_type: int = 0
    nelems: int = 0
    linkage: int = 0
    component_idx: int = -1
    members: list[Member] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    values: list[EnumValue] = field(default_factory=list)
    secinfos: list[VarSecinfo] = field(default_factory=list)
    name_off: int = 0          # where the name was found in the string section (0: none)

    @property
    def vlen(self) -> int:
        """The ``vlen`` header field as it will be encoded."""
        if self.kind in (Kind.STRUCT, Kind.UNION):
            return len(self.members)
        if self.kind in (Kind.ENUM, Kind.ENUM64):
            return len(self.values)
        if self.kind == Kind.FUNC_PROTO:
            return len(self.params)
        if self.kind == Kind.DATASEC:
            return len(self.secinfos)
        if self.kind == Kind.FUNC:
            return self.linkage
        return 0

    @property
    def is_signed(self) -> bool:
        if self.kind == Kind.INT:
            return bool(self.encoding & IntEncoding.SIGNED)
        if self.kind in (Kind.ENUM, Kind.ENUM64):
            return self.kind_flag
        return False

    def member(self, name: str) -> Member | None:
        for m in self.members:
            if m.name == name:
                return m
        return None

    def __repr__(self) -> str:
        extra = f" size={self.size}" if self.kind in SIZED else f" type={self.type}"
        return f"<BtfType {self.kind.name} {self.name!r}{extra}>"


VOID = BtfType(Kind.UNKN)


def essential_name(name: str) -> str:
    """``name`` without a CO-RE ``___flavor`` suffix (``task_struct___v1`` → ``task_struct``)."""
    cut = name.find("___")
    return name[:cut] if cut > 0 else name
