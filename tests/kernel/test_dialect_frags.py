"""Multi-buffer frames from the dialect (issue 11): an ``xdp.frags`` program reads and
writes past the linear part with ``ctx.load_bytes``/``ctx.store_bytes`` and sees the whole
length with ``ctx.buff_len()``, in the kernel and the emulator alike (which model the
kernel's 3520-byte linear part)."""

from __future__ import annotations

import pytest

from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.errors import CompileError

SRC = """
from pyxdp.compiler.lang import *

class Chunk(Struct):
    data: u8[8]

class Seen(Struct):
    linear: u64
    total: u64
    load_rc: i64
    store_rc: i64
    first: u64
    chunk: u8[8]

seen = ArrayMap[u32, Seen](max_entries=1)
OFF = Const(u32, 5000)

@xdp(section="xdp.frags")
def prog(ctx):
    s = seen.lookup(0)
    if not s:
        return XDP_ABORTED
    s.linear = ctx.packet_len()
    s.total = ctx.buff_len()
    ch = Chunk()
    s.load_rc = ctx.load_bytes(OFF, ch)
    s.chunk = ch.data
    mark = Chunk()
    for i in range(8):
        mark.data[i] = 0xA0 + i
    s.store_rc = ctx.store_bytes(s.total - 8, mark)
    head = ctx.load(u8, 0)
    if head:
        s.first = head.value
    return XDP_PASS
"""


def frame(n: int) -> bytes:
    return bytes((i * 7 + i // 251) & 0xFF for i in range(n))


@pytest.mark.parametrize("size", [6000, 9000, 1500])
def test_frags_program_reads_and_writes_the_whole_frame(backend: Backend, size: int) -> None:
    obj = compile_module(SRC)
    assert obj.spec.programs["prog"].flags & 32           # BPF_F_XDP_HAS_FRAGS
    pkt = frame(size)
    with backend.load(obj.spec) as coll:
        r = coll.programs["prog"].run_packet(pkt)
        s = obj.typed_maps(coll)["seen"][0]
    assert r.verdict.name == "PASS"
    assert s.total == size
    assert s.linear == min(size, 3520)
    if size >= 5008:
        assert s.load_rc == 0 and bytes(s.chunk) == pkt[5000:5008]
    else:
        assert s.load_rc < 0                              # past the end: -EFAULT
    assert s.store_rc == 0
    assert r.packet == pkt[:-8] + bytes(range(0xA0, 0xA8))
    assert s.first == pkt[0]


def test_load_bytes_wants_a_stack_or_map_buffer() -> None:
    src = SRC.replace("s.load_rc = ctx.load_bytes(OFF, ch)",
                      "c = ctx.cursor()\n    e = c.parse(Ethernet)\n    if not e:\n"
                      "        return XDP_PASS\n    s.load_rc = ctx.load_bytes(OFF, e)")
    with pytest.raises(CompileError, match="expected a reference"):
        compile_module(src)
