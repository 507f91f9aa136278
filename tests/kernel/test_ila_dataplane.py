"""The ILA data plane on the emulator and the kernel (the ``backend`` fixture): scapy-built
IPv6 TCP/UDP/ICMPv6 frames through the router role (SIR -> locator) and back through the
host role (locator -> SIR), in every checksum mode, with the unknown-identifier policies,
truncated frames and traffic that is not ILA."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from pyxdp.apps.ila import REASONS, Sir, Table
from pyxdp.apps.ila.program import PROGRAM, compiled, load_ila

XDP_DROP, XDP_PASS = 1, 2
SIR = "2001:db8:1::/64"
LOC_A, LOC_B, LOC_D = "2001:db8:a::", "2001:db8:b::", "2001:db8:d::"
IDENT = "::1:0:0:5"
CLIENT = "2001:db8:c::2"


def sir_addr(ident: str = IDENT) -> str:
    return str(ipaddress.IPv6Address(ipaddress.IPv6Address(SIR.split("/")[0]).packed[:8]
                                     + ipaddress.IPv6Address(ident).packed[8:]))


def frame(dst: str, l4: str = "tcp", payload: bytes = b"hello ila") -> bytes:
    ip = IPv6(src=CLIENT, dst=dst)
    if l4 == "tcp":
        pkt = ip / TCP(sport=40000, dport=80, flags="S", seq=1234) / payload
    elif l4 == "udp":
        pkt = ip / UDP(sport=40000, dport=53) / payload
    else:
        pkt = ip / ICMPv6EchoRequest(id=7, seq=1, data=payload)
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt)


def l4_checksum(raw: bytes) -> int:
    p = IPv6(raw[14:])
    return int(p.payload.cksum if hasattr(p.payload, "cksum") else p.payload.chksum)


def recomputed_checksum(raw: bytes) -> int:
    """The checksum scapy computes for the frame's addresses and payload."""
    p = IPv6(raw[14:])
    layer = p.payload
    if hasattr(layer, "cksum"):
        del layer.cksum
    else:
        del layer.chksum
    q = IPv6(bytes(p))
    return int(q.payload.cksum if hasattr(q.payload, "cksum") else q.payload.chksum)


def load(backend: Any, role: str, checksum: str, unknown: str = "pass",
         default: str | None = None, mappings: Any = ((IDENT, LOC_A),)) -> Any:
    sirs = [Sir.from_any({"prefix": SIR, "checksum": checksum, "unknown": unknown,
                          "default_locator": default})]
    t = Table(sirs, [])
    entries = t.entries(mappings)
    locs = t.host_locators(entries) if role == "host" else None
    return load_ila(backend, role, sirs, entries, locs, max_mappings=1024)


def reason(coll: Any, name: str) -> int:
    return sum(c.packets for c in compiled().typed_maps(coll)["stats"][REASONS[name]])


@pytest.mark.parametrize("l4", ["tcp", "udp", "icmp"])
@pytest.mark.parametrize("checksum", ["neutral", "adjust"])
def test_router_then_host_translation(backend: Any, l4: str, checksum: str) -> None:
    f = frame(sir_addr(), l4)
    before = l4_checksum(f)
    with load(backend, "router", checksum) as coll:
        res = coll.programs[PROGRAM].run_packet(f)
        assert res.retval == XDP_PASS
        out = bytes(res.packet)
        assert reason(coll, "translated") == 1
    dst = out[38:54]
    # upper 64 bits: exactly the locator; everything but the destination unchanged
    assert dst[:8] == ipaddress.IPv6Address(LOC_A).packed[:8]
    assert (out[:38] == f[:38] and out[54:] == f[54:]) or checksum == "adjust"
    if checksum == "neutral":
        assert dst[8] & 0x10                                 # the C-bit set on the wire
        assert dst[9:14] == f[47:52]                       # identifier bits 8..47 unchanged
        assert l4_checksum(out) == before                  # transport checksum untouched...
        assert recomputed_checksum(out) == before          # ...and valid for the new address
    else:
        assert dst[8:] == f[46:54]                         # identifier unchanged
        assert l4_checksum(out) != before
        assert l4_checksum(out) == recomputed_checksum(out)
    # and back at the host: the SIR address again, checksum valid, frame as sent
    with load(backend, "host", checksum) as coll:
        res = coll.programs[PROGRAM].run_packet(out)
        assert res.retval == XDP_PASS
        back = bytes(res.packet)
        assert reason(coll, "translated") == 1
    assert back == f


@pytest.mark.parametrize("unknown,verdict,name", [("pass", XDP_PASS, "unknown_pass"),
                                                  ("drop", XDP_DROP, "unknown_drop"),
                                                  ("default", XDP_PASS, "unknown_default")])
def test_unknown_identifier_policies(backend: Any, unknown: str, verdict: int,
                                     name: str) -> None:
    f = frame(sir_addr("::1:0:0:99"), "udp")
    with load(backend, "router", "adjust", unknown,
              LOC_D if unknown == "default" else None) as coll:
        res = coll.programs[PROGRAM].run_packet(f)
        assert res.retval == verdict
        assert reason(coll, name) == 1 and reason(coll, "translated") == 0
        out = bytes(res.packet)
    if unknown == "default":
        assert out[38:46] == ipaddress.IPv6Address(LOC_D).packed[:8]
        assert l4_checksum(out) == recomputed_checksum(out)
    elif unknown == "pass":
        assert out == f


def test_truncated_and_foreign_frames_are_counted_and_passed(backend: Any) -> None:
    f = frame(sir_addr(), "tcp")
    with load(backend, "router", "adjust") as coll:
        prog = coll.programs[PROGRAM]
        for cut in (20, 50):                # the IPv6 header, the destination cut short
            res = prog.run_packet(f[:cut])
            assert res.retval == XDP_PASS and bytes(res.packet) == f[:cut]
        # IPv6 complete, TCP header cut: no checksum to fix, so nothing is rewritten
        res = prog.run_packet(f[:54 + 10])
        assert res.retval == XDP_PASS and bytes(res.packet) == f[:64]
        assert reason(coll, "pass_malformed") == 3
        other = frame("2001:db8:9::1", "tcp")
        res = prog.run_packet(other)
        assert res.retval == XDP_PASS and bytes(res.packet) == other
        assert reason(coll, "pass_not_ila") == 1
        v4 = bytes(Ether(type=0x0800)) + b"\x45" + bytes(40)
        assert prog.run_packet(v4).retval == XDP_PASS
        assert reason(coll, "pass_not_ipv6") == 1
        assert reason(coll, "translated") == 0


def test_host_refuses_identifier_mapped_elsewhere(backend: Any) -> None:
    f = frame(sir_addr(), "tcp")
    with load(backend, "router", "adjust") as coll:
        out = bytes(coll.programs[PROGRAM].run_packet(f).packet)
    # this host has the identifier on locator B: a packet to A:ident is left alone
    with load(backend, "host", "adjust", mappings=[(IDENT, LOC_B), ("::1:0:0:6", LOC_A)]
              ) as coll:
        res = coll.programs[PROGRAM].run_packet(out)
        assert res.retval == XDP_PASS and bytes(res.packet) == out
        assert reason(coll, "pass_host_mismatch") == 1
