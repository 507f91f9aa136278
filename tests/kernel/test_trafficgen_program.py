"""The generator program, run by the kernel (BPF_PROG_TEST_RUN, no live frames): every frame
it emits has correct checksums, and sources/ports vary within the asked ranges."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Ether, ICMPv6EchoRequest, IPv6

from pyxdp.isa import XdpAction
from pyxdp.kernel import Program, test_run
from pyxdp.trafficgen import MIN_FRAME, TemplateError, generator_program, layout_of, template

pytestmark = pytest.mark.kernel


def _checksums_ok(frame: bytes) -> bool:
    """Recompute every checksum with scapy; the frame must not change."""
    pkt = Ether(frame)
    if IP in pkt:
        del pkt[IP].chksum
    for layer in (UDP, TCP, ICMP):
        if layer in pkt:
            del pkt[layer].chksum
    if ICMPv6EchoRequest in pkt:
        del pkt[ICMPv6EchoRequest].cksum
    return bytes(Ether(bytes(pkt))) == frame


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("proto", ["udp", "tcp-syn", "icmp"])
def test_generated_frames_have_valid_checksums_and_vary(proto: str, family: int) -> None:
    frame = template(proto, family=family, size=MIN_FRAME + (20 if family == 6 else 0))
    assert _checksums_ok(frame)
    ports = 50 if proto != "icmp" else 1
    insns = generator_program(frame, sources=100, ports=ports)
    base = int(ipaddress.ip_address("198.18.0.1" if family == 4 else "2001:db8::1"))
    srcs, sports = set(), set()
    with Program.load(insns, name="gen_test") as prog:
        data = frame
        for _ in range(300):  # feed the output back in: pages keep the previous contents
            res = test_run(prog, data)
            assert res.retval == XdpAction.TX
            data = res.data_out
            assert len(data) == len(frame)
            assert _checksums_ok(data), Ether(data).show(dump=True)
            pkt = Ether(data)
            l3 = pkt[IP] if family == 4 else pkt[IPv6]
            srcs.add(int(ipaddress.ip_address(l3.src)) - base)
            if proto != "icmp":
                sports.add(pkt[UDP if proto == "udp" else TCP].sport)
            assert l3.dst == ("198.18.0.2" if family == 4 else "2001:db8::2")
    assert min(srcs) >= 0 and max(srcs) < 100 and len(srcs) > 60
    if proto != "icmp":
        assert min(sports) >= 1024 and max(sports) < 1024 + 50 and len(sports) > 30


def test_fixed_template_is_any_frame_sent_unchanged() -> None:
    frame = template("udp")
    with Program.load(generator_program(frame)) as prog:
        res = test_run(prog, frame)
        assert res.retval == XdpAction.TX and res.data_out == frame
    arp = bytes(12) + b"\x08\x06" + bytes(28)  # not IP: fine when nothing varies
    with Program.load(generator_program(arp)) as prog:
        assert test_run(prog, arp).data_out == arp
    with pytest.raises(TemplateError, match="at least 14 bytes"):
        generator_program(bytes(10))
    with pytest.raises(TemplateError, match="neither IPv4 nor IPv6"):
        generator_program(arp, sources=2)


def test_varying_program_drops_frames_too_short_for_its_writes() -> None:
    frame = template("udp")
    with Program.load(generator_program(frame, sources=4)) as prog:
        assert test_run(prog, frame[:30]).retval == XdpAction.DROP


def test_drop_action_builds_the_same_work_without_sending() -> None:
    frame = template("udp")
    with Program.load(generator_program(frame, sources=10, action=XdpAction.DROP)) as prog:
        assert test_run(prog, frame).retval == XdpAction.DROP


def test_bad_templates_are_refused_with_reasons() -> None:
    with pytest.raises(TemplateError, match="unknown protocol"):
        template("sctp")
    with pytest.raises(TemplateError, match="needs 74"):
        template("tcp-syn", family=6, size=61)
    with pytest.raises(TemplateError, match="neither IPv4 nor IPv6"):
        layout_of(bytes(12) + b"\x08\x06" + bytes(46))
    with pytest.raises(TemplateError, match="too short"):
        layout_of(bytes(20))
    with pytest.raises(TemplateError, match="port variation needs"):
        generator_program(template("icmp"), ports=5)
    with pytest.raises(TemplateError, match="runs past"):
        generator_program(template("udp", sport=65530), ports=10)


def test_ipv4_udp_without_checksum_stays_without() -> None:
    frame = bytearray(template("udp"))
    frame[14 + 20 + 6:14 + 20 + 8] = b"\0\0"  # "no checksum" is legal for UDP over IPv4
    with Program.load(generator_program(bytes(frame), sources=50, ports=50)) as prog:
        data = bytes(frame)
        for _ in range(50):
            data = test_run(prog, data).data_out
            assert data[14 + 20 + 6:14 + 20 + 8] == b"\0\0"
            pkt = Ether(data)
            del pkt[IP].chksum
            assert bytes(Ether(bytes(pkt)))[:34] == data[:34]  # IP header checksum right
