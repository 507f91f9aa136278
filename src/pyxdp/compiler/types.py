"""The dialect's type system, shared by the runtime declarations and the compiler passes.

Integer types are *objects* (``u32`` is an :class:`IntType`) so that the same names work in
three places: as casts in program code (``u16(x)``), as annotations of :class:`Struct`
fields, and as key/value types of map declarations that the control plane turns into codecs.

Byte order: ``be16``/``be32``/``be64`` are *storage* types.  A field declared ``be32`` is
kept in network order in memory, but reading it yields a host-order ``u32`` and writing it
takes one, so ``ip.saddr == 0xC0000201`` compares with 192.0.2.1 as written naturally.  The
compiler inserts the byte swaps; LLVM folds them into constants where it can.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Type:
    """Base of every compile-time type."""

    size: int = 0
    align: int = 1
    name: str = "?"

    def __repr__(self) -> str:
        return self.name


class IntType(Type):
    """A fixed-width integer with C semantics; ``be=True`` marks network-order storage."""

    def __init__(self, bits: int, signed: bool, be: bool = False) -> None:
        self.bits = bits
        self.signed = signed
        self.be = be
        self.size = self.align = bits // 8
        self.name = ("be" if be else ("i" if signed else "u")) + str(bits)

    @property
    def host(self) -> IntType:
        """The type a value of this storage type has once loaded (host order)."""
        return UINTS[self.bits] if self.be else self

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - (1 if self.signed else 0))) - 1

    def wrap(self, value: int) -> int:
        """``value`` reduced to this type, as C conversion does."""
        value &= (1 << self.bits) - 1
        if self.signed and value >> (self.bits - 1):
            value -= 1 << self.bits
        return value

    def __call__(self, value: Any = 0) -> int:
        """Runtime cast, so that helper code also runs as plain Python."""
        return self.host.wrap(int(value))

    def __getitem__(self, n: int) -> ArrayType:
        return ArrayType(self, n)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, IntType) and (self.bits, self.signed, self.be)
                == (other.bits, other.signed, other.be))

    def __hash__(self) -> int:
        return hash((self.bits, self.signed, self.be))


class BoolType(Type):
    size = align = 1
    name = "bool"


class ArrayType(Type):
    """A fixed array (``u8[6]``): MAC and IPv6 addresses, LPM key data."""

    def __init__(self, elem: Type, n: int) -> None:
        self.elem = elem
        self.n = n
        self.size = elem.size * n
        self.align = elem.align
        self.name = f"{elem.name}[{n}]"

    def __call__(self) -> list[int]:
        return [0] * self.n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrayType) and (self.elem, self.n) == (other.elem, other.n)

    def __hash__(self) -> int:
        return hash((self.elem, self.n))


@dataclass(frozen=True)
class BitField:
    """A sub-byte field (``ihl``) carved out of a stored integer field (``ver_ihl``)."""

    base: str
    shift: int
    width: int


class StructType(Type):
    """The layout of a :class:`~pyxdp.compiler.lang.Struct` subclass (C rules, no packing
    unless ``packed``); header types are packed as on the wire."""

    def __init__(self, name: str, fields: list[tuple[str, Type]], packed: bool = False,
                 bits: dict[str, BitField] | None = None, cls: Any = None) -> None:
        self.name = name
        self.fields: dict[str, tuple[int, Type]] = {}
        self.bits = dict(bits or {})
        self.cls = cls
        off = 0
        align = 1
        for fname, ftype in fields:
            a = 1 if packed else ftype.align
            off = (off + a - 1) // a * a
            self.fields[fname] = (off, ftype)
            off += ftype.size
            align = max(align, a)
        self.align = align
        self.size = (off + align - 1) // align * align


@dataclass(frozen=True, eq=True)
class RefType(Type):
    """A pointer the program may dereference: into the packet, a map value, the stack.

    Refs from a parse, a map lookup or a packet load may be None until checked.
    """

    target: Type
    space: str                     # "pkt" | "map" | "stack"
    size: int = 8
    align: int = 8

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"ref[{self.target.name}@{self.space}]"

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=True)
class LitType(Type):
    """An integer constant not yet given a type; it takes the type of what it meets."""

    value: int

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"const {self.value}"

    def __repr__(self) -> str:
        return self.name


class _Simple(Type):
    def __init__(self, name: str, size: int = 8) -> None:
        self.name = name
        self.size = self.align = size


CTX = _Simple("ctx")            # the program's context argument
CURSOR = _Simple("cursor")      # a parse position in the packet
RAWPTR = _Simple("rawptr")      # an unchecked packet pointer (ctx.data escape hatch)
VOID = _Simple("void", 0)
NONE = _Simple("None", 0)
BOOL = BoolType()


@dataclass(frozen=True)
class MapRefType(Type):
    """The type of a module-level map declaration used inside a program."""

    decl: Any = field(compare=False)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"map {self.decl.name}"


@dataclass(frozen=True)
class MapHandleType(Type):
    """What an ArrayOfMaps/HashOfMaps lookup points at: an inner map, whose methods are
    those of its template ``decl`` (held in a ``RefType(..., "map")``: None until checked)."""

    decl: Any = field(compare=False)
    size: int = 0

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"inner map of {self.decl.kind}"


@dataclass(frozen=True)
class TupleType(Type):
    items: tuple[Type, ...] = ()

    @property
    def name(self) -> str:  # type: ignore[override]
        return "(" + ", ".join(t.name for t in self.items) + ")"


u8, u16, u32, u64 = (IntType(b, False) for b in (8, 16, 32, 64))
i8, i16, i32, i64 = (IntType(b, True) for b in (8, 16, 32, 64))
be16, be32, be64 = (IntType(b, False, be=True) for b in (16, 32, 64))
UINTS = {8: u8, 16: u16, 32: u32, 64: u64}
SINTS = {8: i8, 16: i16, 32: i32, 64: i64}
INT_TYPES = {t.name: t for t in (u8, u16, u32, u64, i8, i16, i32, i64, be16, be32, be64)}


def is_int(t: Type) -> bool:
    return isinstance(t, IntType | LitType)


def promote(t: IntType) -> IntType:
    """C integer promotion: anything narrower than ``int`` computes as ``int`` (i32)."""
    t = t.host
    return i32 if t.bits < 32 else t


def common(a: IntType, b: IntType) -> IntType:
    """C's usual arithmetic conversions on two promoted integer types."""
    a, b = promote(a), promote(b)
    if a.signed == b.signed:
        return a if a.bits >= b.bits else b
    uns, sig = (a, b) if not a.signed else (b, a)
    return uns if uns.bits >= sig.bits else sig


def fits(value: int, t: IntType) -> bool:
    """Does a constant fit ``t`` either as written or as its two's complement pattern?"""
    return -(1 << (t.bits - 1)) <= value < (1 << t.bits)
