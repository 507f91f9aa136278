"""``bpf_trace_printk`` formatting: the kernel's small printf subset, rendered in Python."""

from __future__ import annotations

import re
from collections.abc import Callable

from pyxdp.errors import EmulatorError

_SPEC = re.compile(rb"%([-+ 0#]*)(\d*)(?:\.(\d+))?(ll|l|h|hh|z)?([diuxXpscS%])")


def render(fmt: bytes, args: list[int], read_str: Callable[[int], bytes]) -> str:
    """Format ``fmt`` with up to three u64 ``args`` the way the kernel would print them."""
    out: list[str] = []
    pos = 0
    used = 0
    for m in _SPEC.finditer(fmt):
        out.append(fmt[pos:m.start()].decode("utf-8", "replace"))
        pos = m.end()
        flags, width, _prec, length, conv = m.groups()
        if conv == b"%":
            out.append("%")
            continue
        if used >= len(args):
            raise EmulatorError("trace_printk: more conversions than arguments")
        value = args[used]
        used += 1
        bits = 64 if length in (b"l", b"ll", b"z") or conv == b"p" else 32
        value &= (1 << bits) - 1
        pyflags = flags.decode()
        spec = f"{pyflags}{width.decode()}"
        if conv in (b"d", b"i"):
            if value >> (bits - 1):
                value -= 1 << bits
            out.append(format(value, spec + "d"))
        elif conv == b"u":
            out.append(format(value, spec + "d"))
        elif conv in (b"x", b"X"):
            out.append(format(value, spec + conv.decode()))
        elif conv == b"p":
            out.append("0x" + format(value, "x"))
        elif conv == b"c":
            out.append(chr(value & 0xFF))
        else:
            out.append(read_str(value).decode("utf-8", "replace"))
    out.append(fmt[pos:].decode("utf-8", "replace"))
    return "".join(out)
