"""BPF_PROG_TEST_RUN: run a loaded program on a buffer inside the kernel.

This is how kernel behaviour is tested without a network: the same packet through the
emulator and through here must give the same verdict, bytes and map state.
"""

from __future__ import annotations

import ctypes
import errno as _errno
from dataclasses import dataclass
from typing import Any

from pyxdp._uapi import Cmd
from pyxdp.errors import BpfError
from pyxdp.kernel._fd import fd_number
from pyxdp.kernel._sys import TestRunAttr, addr, bpf

BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2
XDP_PACKET_HEADROOM = 256
_DEFAULT_OUT_EXTRA = 4096  # room for bpf_xdp_adjust_head/tail growth


class XdpMd(ctypes.Structure):
    """``struct xdp_md``: the XDP context as a test run takes and returns it.

    In a test run ``data``/``data_end`` are offsets (``data_meta`` ≤ ``data``), and
    ``ingress_ifindex``/``rx_queue_index`` select a real device queue (both 0: none).
    """

    _fields_ = [("data", ctypes.c_uint32), ("data_end", ctypes.c_uint32),
                ("data_meta", ctypes.c_uint32), ("ingress_ifindex", ctypes.c_uint32),
                ("rx_queue_index", ctypes.c_uint32), ("egress_ifindex", ctypes.c_uint32)]


@dataclass(frozen=True)
class TestRunResult:
    __test__ = False  # not a pytest class

    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration_ns: int          # average per repetition, as the kernel measures it


def test_run(prog: Any, data: bytes = b"", ctx: Any = None, repeat: int = 1, flags: int = 0,
             batch_size: int = 0, data_size_out: int | None = None,
             cpu: int = 0) -> TestRunResult:
    """Run ``prog`` on ``data`` (BPF_PROG_TEST_RUN) and return verdict and output.

    ``ctx`` is a ctypes structure (e.g. :class:`XdpMd`) or bytes; ``ctx_out`` comes back
    with the same size.  With ``BPF_F_TEST_XDP_LIVE_FRAMES`` the frames really go out
    (redirect/TX) ``repeat`` times in batches of ``batch_size`` and there is no output.
    If the output buffer is too small (``ENOSPC``) the run is repeated with the size the
    kernel asked for.
    """
    data = bytes(data)
    live = bool(flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    ctx_bytes = None if ctx is None else bytes(ctx)
    out_size = 0 if live else (data_size_out if data_size_out is not None
                               else len(data) + _DEFAULT_OUT_EXTRA)
    data_in = ctypes.create_string_buffer(data, max(len(data), 1))
    ctx_in = None if ctx_bytes is None else ctypes.create_string_buffer(
        ctx_bytes, max(len(ctx_bytes), 1))
    for _ in range(2):
        data_out = ctypes.create_string_buffer(max(out_size, 1)) if out_size else None
        ctx_out = ctypes.create_string_buffer(len(ctx_bytes)) if (
            ctx_bytes and not live) else None
        attr = TestRunAttr(
            prog_fd=fd_number(prog), data_size_in=len(data), data_in=addr(data_in),
            data_size_out=out_size, data_out=addr(data_out), repeat=repeat,
            ctx_size_in=len(ctx_bytes) if ctx_bytes else 0, ctx_in=addr(ctx_in),
            ctx_size_out=len(ctx_bytes) if ctx_out is not None and ctx_bytes else 0,
            ctx_out=addr(ctx_out), flags=flags, cpu=cpu, batch_size=batch_size)
        try:
            bpf(Cmd.PROG_TEST_RUN, attr)
        except BpfError as e:
            if e.errno == _errno.ENOSPC and data_out is not None and (
                    attr.data_size_out > out_size):
                out_size = attr.data_size_out
                continue
            raise
        out = ctypes.string_at(data_out, attr.data_size_out) if data_out is not None else b""
        cout = (ctypes.string_at(ctx_out, attr.ctx_size_out)
                if ctx_out is not None else None)
        return TestRunResult(attr.retval, out, cout, attr.duration)
    raise BpfError(_errno.ENOSPC, "BPF_PROG_TEST_RUN", "output kept growing")


test_run.__test__ = False  # type: ignore[attr-defined]  # for pytest: not a test


__all__ = [
    "BPF_F_TEST_RUN_ON_CPU", "BPF_F_TEST_SKB_CHECKSUM_COMPLETE", "BPF_F_TEST_XDP_LIVE_FRAMES",
    "TestRunResult", "XDP_PACKET_HEADROOM", "XdpMd", "test_run",
]
