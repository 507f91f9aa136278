"""Small ready-made programs, built with :class:`pyxdp.asm.Builder`, as pure specs.

They are the sinks and reflectors of tests, benchmarks and the demo: count every packet
(packets and bytes, per CPU, in an array map named ``counters``) and return a fixed verdict,
or swap MAC addresses and bounce the frame (``XDP_TX``).  Being specs, each runs in the
kernel (:meth:`pyxdp.kernel.Program.load` with the map) or in the emulator alike.
"""

from __future__ import annotations

from pyxdp.abi import MapType, ProgType
from pyxdp.asm import R1, R2, R3, R7, R10, Builder
from pyxdp.isa import XdpAction
from pyxdp.maps import MapSpec
from pyxdp.spec import ProgramSpec

TC_ACT_OK = 0
TC_ACT_SHOT = 2
COUNTERS = "counters"


def counters_spec(name: str = COUNTERS) -> MapSpec:
    """Per-CPU ``u64[2]``: packets at key 0, bytes at key 1."""
    return MapSpec(name, MapType.PERCPU_ARRAY, 4, 8, 2)


def _count(b: Builder, length_from_ctx: tuple[int, int] | None, map_name: str) -> None:
    """counters[0] += 1; counters[1] += length. r6 = ctx on entry; clobbers r0-r5, r7."""
    if length_from_ctx is None:
        b.mov64(7, 0)
    else:
        data_off, end_off = length_from_ctx
        b.ldx("w", 7, 6, end_off).ldx("w", 2, 6, data_off).sub64(7, R2)
    for key, what in ((0, "packets"), (1, "bytes")):
        b.st("w", 10, -4, key)
        b.ld_map_fd(1, map_name).mov64(2, R10).add64(2, -4).call("map_lookup_elem")
        b.jeq(0, 0, f"skip_{what}")
        if key == 0:
            b.mov64(1, 1)
        else:
            b.mov64(1, R7)
        b.ldx("dw", 3, 0, 0).add64(3, R1).stx("dw", 0, 3, 0)
        b.label(f"skip_{what}")


def xdp_count(action: XdpAction = XdpAction.DROP, *, name: str = "xdp_count",
              map_name: str = COUNTERS) -> ProgramSpec:
    """XDP: count the packet, return ``action``."""
    b = Builder()
    b.mov64(6, R1)
    _count(b, (0, 4), map_name)
    b.mov64(0, int(action)).exit()
    return ProgramSpec(name, ProgType.XDP, b.build(), map_refs=b.spec_map_refs())


def xdp_reflect(*, name: str = "xdp_reflect", map_name: str = COUNTERS) -> ProgramSpec:
    """XDP: count, swap the Ethernet source and destination, ``XDP_TX`` the frame back."""
    b = Builder()
    b.mov64(6, R1)
    _count(b, (0, 4), map_name)
    b.ldx("w", 2, 6, 0).ldx("w", 3, 6, 4).mov64(1, R2).add64(1, 14).jgt(1, R3, "drop")
    # 6-byte swap: dst (0..5) <-> src (6..11), as a u32 and a u16 each
    b.ldx("w", 0, 2, 0).ldx("h", 1, 2, 4).ldx("w", 3, 2, 6).ldx("h", 7, 2, 10)
    b.stx("w", 2, 3, 0).stx("h", 2, 7, 4).stx("w", 2, 0, 6).stx("h", 2, 1, 10)
    b.mov64(0, XdpAction.TX).exit()
    b.label("drop").mov64(0, XdpAction.DROP).exit()
    return ProgramSpec(name, ProgType.XDP, b.build(), map_refs=b.spec_map_refs())


def tc_count(verdict: int = TC_ACT_SHOT, *, name: str = "tc_count",
             map_name: str = COUNTERS) -> ProgramSpec:
    """TC (cls_bpf, direct action): count the packet, return ``verdict``."""
    b = Builder()
    b.mov64(6, R1)
    _count(b, (76, 80), map_name)  # __sk_buff data / data_end
    b.mov64(0, verdict).exit()
    return ProgramSpec(name, ProgType.SCHED_CLS, b.build(), map_refs=b.spec_map_refs())


def xdp_verdict(action: XdpAction, *, name: str = "xdp_verdict") -> ProgramSpec:
    """XDP: return ``action`` and nothing else (the cheapest possible program)."""
    b = Builder().mov64(0, int(action)).exit()
    return ProgramSpec(name, ProgType.XDP, b.build())


def read_counters(m: object) -> tuple[int, int]:
    """(packets, bytes) summed over CPUs from a counters map (kernel or emulator)."""
    pkts = m[0]  # type: ignore[index]
    byts = m[1]  # type: ignore[index]
    return (sum(pkts) if isinstance(pkts, list) else pkts,
            sum(byts) if isinstance(byts, list) else byts)


__all__ = ["COUNTERS", "TC_ACT_OK", "TC_ACT_SHOT", "counters_spec", "read_counters",
           "tc_count", "xdp_count", "xdp_reflect", "xdp_verdict"]
