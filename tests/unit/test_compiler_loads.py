"""Variable-offset packet loads (``ctx.load(T, a + b)``): the offset is bounded as one value
(a barrier stops LLVM from reassociating ``base + (a + b)`` into ``(base + a) + b``, whose
parts the verifier cannot bound) and by ``0xFFFF - size``, the most for which the verifier
still records the checked range."""

from __future__ import annotations

import re
from pathlib import Path

from pyxdp.compiler import compile_module
from pyxdp.emu import EmuBackend

SUM_OFFSET = (Path(__file__).resolve().parents[1] / "data" / "py" / "sum_offset.py").read_text()


def test_sum_offset_is_bounded_below_max_packet_off_minus_size() -> None:
    obj = compile_module(SUM_OFFSET, dump={"asm"})
    asm = obj.dumps["asm"]
    assert re.search(r"if [rw]\d+ > 65534 goto", asm), asm   # 0xFFFF - 1 for a u8


def test_sum_offset_loads_the_right_bytes() -> None:
    coll = EmuBackend().load(compile_module(SUM_OFFSET).spec)
    emu = coll.programs["prog"]
    emu.maps["table"][0] = 14
    packet = bytes(range(64))
    assert int(emu.run_xdp(packet).verdict) == 2
    assert [emu.maps["out"][i] for i in range(4)] == [14, 15, 16, 17]
    emu.maps["table"][0] = 62                      # runs past the end at the third byte
    assert int(emu.run_xdp(packet).verdict) == 1
