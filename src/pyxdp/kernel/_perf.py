"""Reading a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY`` from user space: one perf ring per CPU.

For every CPU a software event of kind ``PERF_COUNT_SW_BPF_OUTPUT`` is opened with
``perf_event_open(2)`` (``PERF_SAMPLE_RAW``, a wakeup per sample), its ring is mapped (a
control page, then ``2^n`` data pages), the event enabled, and its fd stored in the map at
the CPU's index: ``bpf_perf_event_output``/``bpf_xdp_output`` with ``BPF_F_CURRENT_CPU``
then write a ``PERF_RECORD_SAMPLE`` into the ring of the CPU the program runs on.

The ring: ``data_head`` (written by the kernel) and ``data_tail`` (ours) are u64 at offsets
1024 and 1032 of the control page; records are ``perf_event_header`` (u32 type, u16 misc,
u16 size) and their body, and may wrap around the end of the data area.  A sample's body is
a u32 size and the raw bytes: the program's data, then any packet bytes it asked for, then
zero padding that makes the record 8-byte aligned (the size counts it; callers get those
bytes, as libbpf's callbacks do).  A ``PERF_RECORD_LOST`` counts what the kernel dropped
because the ring was full.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

from pyxdp.errors import MapError

_NR_PERF_EVENT_OPEN = {"x86_64": 298, "amd64": 298, "aarch64": 241, "arm64": 241}
PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
_HEAD_OFF, _TAIL_OFF = 1024, 1032
_ATTR_SIZE = 128                       # PERF_ATTR_SIZE_VER8; the kernel accepts any known
_U64 = struct.Struct("<Q")
_HDR = struct.Struct("<IHH")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.restype = ctypes.c_int


def _perf_event_open(cpu: int) -> int:
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("<IIQQQ", attr, 0, PERF_TYPE_SOFTWARE, _ATTR_SIZE,
                     PERF_COUNT_SW_BPF_OUTPUT, 1, PERF_SAMPLE_RAW)   # sample_period = 1
    struct.pack_into("<I", attr, 48, 1)                            # wakeup_events = 1
    buf = (ctypes.c_char * _ATTR_SIZE).from_buffer(attr)
    nr = _NR_PERF_EVENT_OPEN.get(os.uname().machine.lower())
    if nr is None:
        raise OSError(38, "perf_event_open: unknown architecture")
    fd = _libc.syscall(ctypes.c_long(nr), buf, ctypes.c_int(-1), ctypes.c_int(cpu),
                       ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise MapError(f"perf_event_open(BPF_OUTPUT, cpu {cpu}) failed: {os.strerror(err)}"
                       f" [errno {err}]")
    return int(fd)


class _Ring:
    def __init__(self, cpu: int, pages: int) -> None:
        self.cpu = cpu
        self.fd = _perf_event_open(cpu)
        page = mmap.PAGESIZE
        try:
            self.mm = mmap.mmap(self.fd, page * (1 + pages), mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self.data = memoryview(self.mm)[page:]
        self.size = page * pages
        if _libc.ioctl(self.fd, PERF_EVENT_IOC_ENABLE, 0) != 0:
            err = ctypes.get_errno()
            self.close()
            raise MapError(f"enabling the perf event of cpu {cpu} failed: {os.strerror(err)}")

    def _copy(self, off: int, n: int) -> bytes:
        off %= self.size
        end = off + n
        if end <= self.size:
            return bytes(self.data[off:end])
        return bytes(self.data[off:]) + bytes(self.data[:end - self.size])

    def drain(self, out: list[bytes], limit: int | None) -> int:
        """Append this ring's samples to ``out``; return how many records were lost."""
        lost = 0
        head = _U64.unpack_from(self.mm, _HEAD_OFF)[0]
        tail = _U64.unpack_from(self.mm, _TAIL_OFF)[0]
        while tail < head and (limit is None or len(out) < limit):
            rtype, _misc, size = _HDR.unpack(self._copy(tail, _HDR.size))
            if size < _HDR.size or size > self.size:
                raise MapError(f"perf ring of cpu {self.cpu}: record of {size} bytes")
            body = self._copy(tail + _HDR.size, size - _HDR.size)
            if rtype == PERF_RECORD_SAMPLE:
                (n,) = struct.unpack_from("<I", body, 0)
                out.append(body[4:4 + n])
            elif rtype == PERF_RECORD_LOST:
                lost += struct.unpack_from("<QQ", body, 0)[1]
            tail += size
            _U64.pack_into(self.mm, _TAIL_OFF, tail)
        return lost

    def close(self) -> None:
        self.data.release()
        self.mm.close()
        os.close(self.fd)


class PerfReader:
    """The perf rings of one PERF_EVENT_ARRAY map, one per CPU index the map has (and the
    machine has online), their fds stored in the map; ``close()`` unmaps and closes."""

    def __init__(self, perf_map: object, cpus: list[int], pages: int = 8) -> None:
        if pages <= 0 or pages & (pages - 1):
            raise MapError(f"perf ring pages must be a power of two, not {pages}")
        self.rings: list[_Ring] = []
        self.lost = 0
        try:
            for cpu in cpus:
                ring = _Ring(cpu, pages)
                self.rings.append(ring)
                perf_map._update(cpu.to_bytes(4, "little"),  # type: ignore[attr-defined]
                                 ring.fd.to_bytes(4, "little"), 0)
        except BaseException:
            self.close()
            raise

    def drain(self, limit: int | None = None) -> list[bytes]:
        out: list[bytes] = []
        for ring in self.rings:
            self.lost += ring.drain(out, limit)
        return out

    def close(self) -> None:
        for ring in self.rings:
            ring.close()
        self.rings = []


__all__ = ["PerfReader"]
