"""Setting global variables of an :class:`ObjectSpec` before it is loaded.

``volatile const`` globals live in ``.rodata``, which is frozen at load: the only time to
give them a value is in the spec, which is what :func:`set_variable` does.
"""

from __future__ import annotations

from pyxdp.errors import ElfError
from pyxdp.spec import ObjectSpec, VariableSpec


def _encode(var: VariableSpec, value: int | bytes | bytearray) -> bytes:
    if isinstance(value, bool | int):
        try:
            return int(value).to_bytes(var.size, "little", signed=value < 0)
        except OverflowError:
            raise ValueError(f"{value} does not fit in variable {var.name!r}"
                             f" ({var.size} bytes)") from None
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) != var.size:
            raise ValueError(f"variable {var.name!r} is {var.size} bytes, got {len(raw)}")
        return raw
    raise TypeError(f"a variable takes an int or bytes, not {type(value).__name__}")


def set_variable(obj: ObjectSpec, name: str, value: int | bytes | bytearray) -> None:
    """Set global variable ``name`` (``.rodata``, ``.data`` or ``.bss``) in ``obj``'s data.

    Integers are stored little-endian in the variable's size; bytes must match it exactly.
    """
    var = obj.variables.get(name)
    if var is None:
        raise KeyError(f"no global variable {name!r} (have: {', '.join(obj.variables)})")
    raw = _encode(var, value)
    m = obj.maps[var.map_name]
    old = m.contents[0][1] if m.contents else bytes(m.value_size)
    if len(old) != m.value_size:
        raise ElfError(f"map {var.map_name!r} holds {len(old)} bytes, expected {m.value_size}")
    m.contents = [(bytes(4), old[:var.offset] + raw + old[var.offset + var.size:])]


def get_variable(obj: ObjectSpec, name: str) -> bytes:
    """The current initial bytes of global variable ``name``."""
    var = obj.variables[name]
    m = obj.maps[var.map_name]
    data = m.contents[0][1] if m.contents else bytes(m.value_size)
    return data[var.offset:var.offset + var.size]
