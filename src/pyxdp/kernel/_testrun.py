"""BPF_PROG_TEST_RUN: run a loaded program on a buffer inside the kernel.

This is how kernel behaviour is tested without a network: the same packet through the
emulator and through here must give the same verdict, bytes and map state.
"""

from __future__ import annotations

import ctypes
import errno as _errno
from dataclasses import dataclass
from typing import Any

from pyxdp.abi import (
    BPF_F_TEST_RUN_ON_CPU,
    BPF_F_TEST_SKB_CHECKSUM_COMPLETE,
    BPF_F_TEST_XDP_LIVE_FRAMES,
    XDP_PACKET_HEADROOM,
    Cmd,
    ProgType,
    XdpMd,
)
from pyxdp.errors import BpfError
from pyxdp.kernel._fd import fd_number
from pyxdp.kernel._info import prog_info
from pyxdp.kernel._sys import TestRunAttr, addr, bpf

_DEFAULT_OUT_EXTRA = 4096  # room for bpf_xdp_adjust_head/tail growth
# Types whose test run takes a context and nothing else: the kernel (bpf_prog_test_run_
# raw_tp / _tracing / _syscall, struct_ops) answers EINVAL to any data_in/data_out pointer,
# to a ``repeat`` other than 0, and (tracing) even to a context.
CTX_ONLY_TYPES = frozenset({ProgType.RAW_TRACEPOINT, ProgType.TRACING, ProgType.LSM,
                            ProgType.SYSCALL, ProgType.STRUCT_OPS})


@dataclass(frozen=True)
class TestRunResult:
    __test__ = False  # not a pytest class

    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration_ns: int          # average per repetition, as the kernel measures it


def _prog_type(prog: Any) -> int | None:
    """The program type of a :class:`Program` (free) or of a bare fd (one info call)."""
    ptype = getattr(prog, "type", None)
    if isinstance(ptype, int) and ptype:
        return ptype
    try:
        return int(prog_info(prog).type)
    except (BpfError, TypeError, ValueError):
        return None


def test_run(prog: Any, data: bytes = b"", ctx: Any = None, repeat: int = 1, flags: int = 0,
             batch_size: int = 0, data_size_out: int | None = None,
             cpu: int = 0, ctx_only: bool | None = None) -> TestRunResult:
    """Run ``prog`` on ``data`` (BPF_PROG_TEST_RUN) and return verdict and output.

    ``ctx`` is a ctypes structure (e.g. :class:`XdpMd`) or bytes; ``ctx_out`` comes back
    with the same size.  With ``BPF_F_TEST_XDP_LIVE_FRAMES`` the frames really go out
    (redirect/TX) ``repeat`` times in batches of ``batch_size`` and there is no output.
    If the output buffer is too small (``ENOSPC``) the run is repeated with the size the
    kernel asked for.

    ``ctx_only`` runs without any data buffer (see :func:`_run_ctx_only`); by default it is
    chosen for raw-tracepoint, tracing, LSM, syscall and struct_ops programs when ``data``
    is empty, as those reject data buffers outright.
    """
    data = bytes(data)
    ptype = None
    if ctx_only is None and not data:
        ptype = _prog_type(prog)
        ctx_only = ptype in CTX_ONLY_TYPES
    if ctx_only:
        if data:
            raise ValueError("a context-only test run takes no data")
        if ptype is None:
            ptype = _prog_type(prog)
        return _run_ctx_only(prog, ctx, repeat, flags, cpu, batch_size,
                             writes_ctx=ptype == ProgType.SYSCALL)
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


def _run_ctx_only(prog: Any, ctx: Any, repeat: int, flags: int, cpu: int,
                  batch_size: int, writes_ctx: bool) -> TestRunResult:
    """A test run with the context as the only input: no data, no data_out, ``repeat`` 0.

    The kernel runs these programs exactly once and measures nothing (duration 0), so a
    ``repeat`` above 1 is refused here rather than as a bare EINVAL.  A syscall program may
    write to its context and the kernel copies it back *into ctx_in* (``writes_ctx``):
    that buffer is returned as ``ctx_out``; for the other types, and without a context,
    ``ctx_out`` is None.
    """
    if repeat > 1:
        raise ValueError(f"a context-only test run executes once; repeat={repeat} is not"
                         " supported by the kernel")
    ctx_bytes = b"" if ctx is None else bytes(ctx)
    ctx_in = ctypes.create_string_buffer(ctx_bytes, len(ctx_bytes)) if ctx_bytes else None
    attr = TestRunAttr(prog_fd=fd_number(prog), ctx_size_in=len(ctx_bytes),
                       ctx_in=addr(ctx_in), flags=flags, cpu=cpu, batch_size=batch_size)
    bpf(Cmd.PROG_TEST_RUN, attr)
    cout = ctypes.string_at(ctx_in, len(ctx_bytes)) if (
        writes_ctx and ctx_in is not None) else None
    return TestRunResult(attr.retval, b"", cout, attr.duration)


test_run.__test__ = False  # type: ignore[attr-defined]  # for pytest: not a test


__all__ = [
    "BPF_F_TEST_RUN_ON_CPU", "BPF_F_TEST_SKB_CHECKSUM_COMPLETE", "BPF_F_TEST_XDP_LIVE_FRAMES",
    "CTX_ONLY_TYPES", "TestRunResult", "XDP_PACKET_HEADROOM", "XdpMd", "test_run",
]
