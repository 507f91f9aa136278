"""The emulator's address space: regions of bytes at fake 64-bit addresses.

An address is ``(region << SHIFT) | offset``.  Translated code turns an address into a
buffer and an offset with one dict lookup and one mask, and lets the buffer's own bounds
(``bytearray`` indexing, ``struct.unpack_from``) do the bounds check: an offset past the end
raises, a missing region raises, and the driver turns either into :class:`EmulatorError`.
``SHIFT`` is 31 so that packet addresses (region 1) fit in 32 bits, which is what the
``u32`` fields of ``struct xdp_md`` need: a ``ldxw`` from the context yields a real pointer.
Region 0 is never mapped, so NULL dereferences fault.
"""

from __future__ import annotations

from pyxdp.errors import EmulatorError

SHIFT = 31
OFFSET_MASK = (1 << SHIFT) - 1
M64 = (1 << 64) - 1

PACKET = 1          # XDP packet buffer (headroom + data)
CTX = 2             # struct xdp_md (immutable bytes; helpers replace it)
MEM = 3             # conformance "mem" input
STACK0 = 4          # stack of frame k is region STACK0 + k
MAX_FRAMES = 8
STACK_SIZE = 512
FIRST_DYNAMIC = STACK0 + MAX_FRAMES
MAX_DYNAMIC = 1 << 16   # dynamic regions kept before a flush between runs

# non-memory handles: never mapped, so dereferencing one faults
MAP_HANDLE_BASE = 0x7E << 48
FUNC_HANDLE_BASE = 0x7F << 48

Buffer = bytearray | bytes | memoryview


def base_of(region: int) -> int:
    return region << SHIFT


def frame_pointer(depth: int) -> int:
    """Value of r10 in frame ``depth``: one past the top of that frame's stack."""
    return base_of(STACK0 + depth) + STACK_SIZE


class Memory:
    """All mapped regions of one machine.

    ``regions`` is the dict translated code indexes directly.  Map values and ring-buffer
    records get regions on demand (``map_buffer``); they live until :meth:`flush_dynamic`,
    which the machine calls between runs once too many have piled up, because a pointer
    never outlives the run that obtained it.
    """

    def __init__(self) -> None:
        self.regions: dict[int, Buffer] = {}
        self._static_by_id: dict[int, int] = {}
        self._dyn_by_id: dict[int, int] = {}
        self.dynamic_addresses = self._dyn_by_id   # id(buffer) -> base, for fast paths
        self._next = FIRST_DYNAMIC
        self.full = False    # too many dynamic regions: flush before the next run
        self.stacks = [bytearray(STACK_SIZE) for _ in range(MAX_FRAMES)]
        for depth, stack in enumerate(self.stacks):
            self.regions[STACK0 + depth] = stack

    # -- mapping -------------------------------------------------------------------------
    def map_buffer(self, buf: Buffer, static: bool = False) -> int:
        """Base address of ``buf``, mapping it first if needed (identity-keyed)."""
        key = id(buf)
        base = self._static_by_id.get(key)
        if base is None:
            base = self._dyn_by_id.get(key)
        if base is not None:
            return base
        region = self._next
        self._next += 1
        self.regions[region] = buf
        base = base_of(region)
        if static:
            self._static_by_id[key] = base
        else:
            self._dyn_by_id[key] = base
            if len(self._dyn_by_id) >= MAX_DYNAMIC:
                self.full = True
        return base

    def unmap(self, buf: Buffer) -> None:
        """Forget a dynamic buffer (a discarded ring-buffer record)."""
        base = self._dyn_by_id.pop(id(buf), None)
        if base is not None:
            self.regions.pop(base >> SHIFT, None)

    def flush_dynamic(self, force: bool = False) -> None:
        if not force and len(self._dyn_by_id) < MAX_DYNAMIC:
            return
        for base in self._dyn_by_id.values():
            self.regions.pop(base >> SHIFT, None)
        self._dyn_by_id.clear()   # in place: fast paths hold a reference
        self.full = False

    # -- checked access for helpers ------------------------------------------------------
    def locate(self, addr: int, size: int) -> tuple[Buffer, int]:
        """The buffer and offset of ``[addr, addr+size)``, or EmulatorError."""
        buf = self.regions.get(addr >> SHIFT) if addr >= 0 else None
        off = addr & OFFSET_MASK
        if buf is None or size < 0 or off + size > len(buf):
            raise EmulatorError(f"invalid memory access of {size} bytes", address=addr)
        return buf, off

    def read(self, addr: int, size: int) -> bytes:
        buf, off = self.locate(addr, size)
        return bytes(buf[off:off + size])

    def write(self, addr: int, data: bytes) -> None:
        buf, off = self.locate(addr, len(data))
        if not isinstance(buf, bytearray):
            raise EmulatorError("write to read-only memory", address=addr)
        buf[off:off + len(data)] = data

    def read_cstr(self, addr: int, limit: int) -> bytes:
        """A NUL-terminated string of at most ``limit`` bytes (the NUL must be inside)."""
        buf, off = self.locate(addr, 1)
        end = bytes(buf[off:off + limit]).find(b"\0")
        if end < 0:
            raise EmulatorError("string is not NUL-terminated within its size", address=addr)
        return bytes(buf[off:off + end])
