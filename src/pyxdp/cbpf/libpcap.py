"""tcpdump expressions through the system libpcap (ctypes; Debian ``libpcap0.8``).

:func:`compile_expression` is ``pcap_compile`` on a dead Ethernet handle: the expression
becomes classic BPF exactly as tcpdump would run it.  :func:`offline_filter` is
``pcap_offline_filter``: libpcap's own interpreter, the reference a translation is
checked against.  Nothing here needs privileges or touches the kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

from pyxdp.cbpf.translate import CbpfError, CbpfInsn

DLT_EN10MB = 1
SNAPLEN = 262144
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
NAMES = ("pcap", "libpcap.so.0.8", "libpcap.so.1")


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PktHdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


@functools.lru_cache(maxsize=1)
def _lib() -> Any:
    for name in NAMES:
        path = ctypes.util.find_library(name) if name == "pcap" else name
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program),
                                     ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_Program), ctypes.POINTER(_PktHdr),
                                            ctypes.c_char_p]
        return lib
    raise CbpfError("libpcap is not installed (Debian: apt-get install libpcap0.8):"
                    " tcpdump expressions need it")


def compile_expression(expr: str, *, snaplen: int = SNAPLEN, optimize: bool = True
                       ) -> list[CbpfInsn]:
    """Classic BPF for the tcpdump expression ``expr`` on Ethernet frames."""
    lib = _lib()
    handle = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    if not handle:
        raise CbpfError("pcap_open_dead failed")
    prog = _Program()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), int(optimize),
                            PCAP_NETMASK_UNKNOWN) != 0:
            why = lib.pcap_geterr(handle).decode(errors="replace")
            raise CbpfError(f"bad filter expression {expr!r}: {why}")
        out = [CbpfInsn(prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf,
                        prog.bf_insns[i].k) for i in range(prog.bf_len)]
        lib.pcap_freecode(ctypes.byref(prog))
        return out
    finally:
        lib.pcap_close(handle)


def offline_filter(prog: list[CbpfInsn], packet: bytes, wire_len: int | None = None) -> int:
    """libpcap's verdict on ``packet``: 0 (no match) or the snap length to keep."""
    lib = _lib()
    arr = (_Insn * len(prog))(*[_Insn(i.code, i.jt, i.jf, i.k) for i in prog])
    p = _Program(len(prog), ctypes.cast(arr, ctypes.POINTER(_Insn)))
    hdr = _PktHdr(_Timeval(0, 0), len(packet), wire_len if wire_len is not None
                  else len(packet))
    return int(lib.pcap_offline_filter(ctypes.byref(p), ctypes.byref(hdr), packet))


__all__ = ["compile_expression", "offline_filter"]
