"""Arithmetic the eBPF ISA defines but Python does not have: truncating signed division,
the ISA's division-by-zero rules, byte swaps, sign extension.

Values are unsigned Python ints in ``[0, 2**bits)``.  Both the translator (which calls these
for the rare operations) and the reference interpreter use them, so the two agree by
construction on the tricky corner cases and differ only in code generation.
"""

from __future__ import annotations

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def sx(value: int, bits: int) -> int:
    """Interpret the low ``bits`` of ``value`` as two's complement."""
    half = 1 << (bits - 1)
    return ((value & ((1 << bits) - 1)) ^ half) - half


def sdiv(a: int, b: int, bits: int) -> int:
    """Signed division truncating toward zero; by zero gives 0; INT_MIN/-1 wraps."""
    mask = (1 << bits) - 1
    x, y = sx(a, bits), sx(b, bits)
    if y == 0:
        return 0
    q = abs(x) // abs(y)
    return (-q if (x < 0) != (y < 0) else q) & mask


def smod(a: int, b: int, bits: int) -> int:
    """Signed remainder with the dividend's sign; by zero leaves the dividend."""
    mask = (1 << bits) - 1
    x, y = sx(a, bits), sx(b, bits)
    if y == 0:
        return a & mask
    r = abs(x) % abs(y)
    return (-r if x < 0 else r) & mask


def udiv(a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    b &= mask
    return (a & mask) // b if b else 0


def umod(a: int, b: int, bits: int) -> int:
    mask = (1 << bits) - 1
    b &= mask
    return (a & mask) % b if b else a & mask


def arsh(a: int, n: int, bits: int) -> int:
    return (sx(a, bits) >> n) & ((1 << bits) - 1)


def bswap(value: int, width: int) -> int:
    """Reverse the low ``width`` bits' bytes (the upper bits are dropped)."""
    n = width // 8
    return int.from_bytes((value & ((1 << width) - 1)).to_bytes(n, "little"), "big")


def swap16(v: int) -> int:
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)


def swap32(v: int) -> int:
    return int.from_bytes((v & M32).to_bytes(4, "little"), "big")


def swap64(v: int) -> int:
    return int.from_bytes((v & M64).to_bytes(8, "little"), "big")
