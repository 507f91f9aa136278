"""The generator's XDP program: rewrite the template frame per packet, then ``XDP_TX`` it.

With ``BPF_F_TEST_XDP_LIVE_FRAMES`` the kernel runs this program once per frame and
transmits what it returns ``XDP_TX`` for out of the context's ingress interface.  Per-packet
variation (source address, source port) happens here, in the kernel, at line rate.

Frames live in recycled page-pool pages, so a frame may still hold what the previous run
wrote.  The program therefore never assumes the template's contents: it reads the current
words and checksum and updates the checksum incrementally (RFC 1624: HC' = ~(~HC + ~m + m')).
16-bit words are loaded and stored little-endian throughout; one's-complement sums are
byte-order independent, so no swapping is needed for the checksum arithmetic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyxdp.asm import R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, Builder
from pyxdp.errors import PyxdpError
from pyxdp.isa import Instruction, XdpAction

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58


class TemplateError(PyxdpError, ValueError):
    """A template frame the generator cannot vary (too short, unknown protocol)."""


@dataclass(frozen=True)
class FrameLayout:
    """Where the generator writes in a template frame."""

    family: int            # 4 or 6
    proto: int
    saddr_off: int         # offset of the (last) 32 bits of the source address
    ip_csum_off: int       # IPv4 header checksum, or -1
    l4_off: int
    l4_csum_off: int       # -1 when the L4 checksum does not cover what we vary
    sport_off: int         # -1 without ports
    udp: bool

    @property
    def min_len(self) -> int:
        return max(self.saddr_off + 4, self.l4_off + 8, self.l4_csum_off + 2,
                   self.sport_off + 2)


def layout_of(frame: bytes) -> FrameLayout:
    """Find the fields of an Ethernet + IPv4/IPv6 + UDP/TCP/ICMP frame."""
    if len(frame) < ETH_HLEN + 20:
        raise TemplateError(f"frame of {len(frame)} bytes is too short for Ethernet + IP")
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    l3 = ETH_HLEN
    if ethertype == ETH_P_IP:
        ihl = (frame[l3] & 0x0F) * 4
        if frame[l3] >> 4 != 4 or ihl < 20:
            raise TemplateError("bad IPv4 header in template")
        proto = frame[l3 + 9]
        family, saddr_off, ip_csum, l4 = 4, l3 + 12, l3 + 10, l3 + ihl
    elif ethertype == ETH_P_IPV6:
        if len(frame) < l3 + 40:
            raise TemplateError("frame too short for IPv6")
        proto = frame[l3 + 6]
        family, saddr_off, ip_csum, l4 = 6, l3 + 8 + 12, -1, l3 + 40
    else:
        raise TemplateError(f"template ethertype {ethertype:#06x} is neither IPv4 nor IPv6")
    if proto == IPPROTO_UDP:
        csum, sport, udp = l4 + 6, l4, True
        if family == 4 and len(frame) >= l4 + 8 and frame[l4 + 6:l4 + 8] == b"\0\0":
            csum = -1  # IPv4 UDP without checksum: keep it that way
    elif proto == IPPROTO_TCP:
        csum, sport, udp = l4 + 16, l4, False
    elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        # ICMPv4's checksum has no pseudo header; ICMPv6's covers the source address.
        csum, sport, udp = (l4 + 2 if proto == IPPROTO_ICMPV6 else -1), -1, False
    else:
        raise TemplateError(f"template protocol {proto} is not UDP, TCP or ICMP")
    lay = FrameLayout(family, proto, saddr_off, ip_csum, l4, csum, sport, udp)
    if len(frame) < lay.min_len:
        raise TemplateError(f"frame of {len(frame)} bytes is too short for its L4 header")
    return lay


def _fold_and_store(b: Builder, acc: int, tmp: int, off: int, udp: bool, tag: str) -> None:
    for _ in range(2):
        b.mov64(tmp, R(acc)).rsh64(tmp, 16).and64(acc, 0xFFFF).add64(acc, R(tmp))
    b.xor64(acc, 0xFFFF)
    if udp:  # a computed UDP checksum of 0 is sent as 0xffff (0 means "none")
        b.jne(acc, 0, f"store_{tag}").mov64(acc, 0xFFFF).label(f"store_{tag}")
    b.stx("h", DATA, acc, off)


DATA = 2  # r2 holds the packet's data pointer throughout
_REGS = (R0, R1, R2, R3, R4, R5, R6, R7, R8, R9)


def R(n: int):  # the register operand for register number n
    return _REGS[n]


def _add_word_update(b: Builder, acc: int, old_off: int, new_reg: int, tmp: int,
                     shift: int) -> None:
    """acc += ~old16 + new16, where new16 is ``new_reg >> shift & 0xffff``."""
    b.ldx("h", tmp, DATA, old_off).xor64(tmp, 0xFFFF).add64(acc, R(tmp))
    b.mov64(tmp, R(new_reg))
    if shift:
        b.rsh64(tmp, shift)
    b.and64(tmp, 0xFFFF).add64(acc, R(tmp))


def generator_program(frame: bytes, *, sources: int = 1, base_source: int | None = None,
                      ports: int = 1, base_port: int | None = None,
                      action: XdpAction = XdpAction.TX) -> list[Instruction]:
    """Instructions of a generator for ``frame``.

    ``sources > 1`` varies the last 32 bits of the source address over
    ``base_source .. base_source + sources - 1`` (default: the template's own address);
    ``ports > 1`` varies the UDP/TCP source port likewise.  Random per packet
    (``bpf_get_prandom_u32``), so several CPUs need no shared counter.  ``action`` other
    than ``TX`` (e.g. ``DROP``) builds the same per-packet work without sending: the
    generator's own cost, for benchmarks.
    """
    if not 1 <= sources <= 1 << 31 or not 1 <= ports <= 65536:
        raise TemplateError(f"sources must be 1..2^31 and ports 1..65536 (got {sources},"
                            f" {ports})")
    vary = sources > 1 or ports > 1
    b = Builder()
    b.mov64(6, R1)
    if not vary:  # any frame at all, sent as it is: no layout needed
        if len(frame) < ETH_HLEN:
            raise TemplateError(f"a frame needs at least {ETH_HLEN} bytes, not {len(frame)}")
        b.ldx("w", 2, 6, 0).ldx("w", 3, 6, 4)
        b.mov64(4, R2).add64(4, ETH_HLEN).jgt(4, R3, "drop")
        return b.mov64(0, int(action)).exit().label("drop").mov64(0, XdpAction.DROP).exit(
        ).build()
    lay = layout_of(frame)
    if ports > 1 and lay.sport_off < 0:
        raise TemplateError("port variation needs a UDP or TCP template")
    if base_source is None:
        (base_source,) = struct.unpack_from("!I", frame, lay.saddr_off)
    if base_port is None:
        base_port = struct.unpack_from("!H", frame, lay.sport_off)[0] if lay.sport_off >= 0 else 0
    if base_source + sources > 1 << 32 or base_port + ports > 1 << 16:
        raise TemplateError("address or port range runs past its maximum")
    b.call("get_prandom_u32").mov64(7, R0)
    b.ldx("w", 2, 6, 0).ldx("w", 3, 6, 4)
    b.mov64(4, R2).add64(4, lay.min_len).jgt(4, R3, "drop")
    # r5: L4 checksum accumulator, r4: IPv4 header checksum accumulator, r8/r9/r3: scratch
    l4 = lay.l4_csum_off >= 0
    if l4:
        b.ldx("h", 5, DATA, lay.l4_csum_off).xor64(5, 0xFFFF)
    if lay.ip_csum_off >= 0:
        b.ldx("h", 4, DATA, lay.ip_csum_off).xor64(4, 0xFFFF)
    if sources > 1:
        b.mov64(8, R7).and64(8, 0x7FFFFFFF).mod64(8, sources)
        b.lddw(9, base_source).add64(8, R9).be(8, 32)
        for half, shift in ((0, 0), (2, 16)):
            if l4:
                _add_word_update(b, 5, lay.saddr_off + half, 8, 3, shift)
            if lay.ip_csum_off >= 0:
                _add_word_update(b, 4, lay.saddr_off + half, 8, 3, shift)
        b.stx("w", DATA, 8, lay.saddr_off)
    if ports > 1:
        b.mov64(8, R7).rsh64(8, 12).and64(8, 0xFFFFF).mod64(8, ports).add64(8, base_port)
        b.be(8, 16)
        if l4:
            _add_word_update(b, 5, lay.sport_off, 8, 3, 0)
        b.stx("h", DATA, 8, lay.sport_off)
    if l4:
        _fold_and_store(b, 5, 3, lay.l4_csum_off, lay.udp, "l4")
    if lay.ip_csum_off >= 0:
        _fold_and_store(b, 4, 3, lay.ip_csum_off, False, "ip")
    b.mov64(0, int(action)).exit()
    b.label("drop").mov64(0, XdpAction.DROP).exit()
    return b.build()
