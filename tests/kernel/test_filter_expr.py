"""``expr`` rules of ``pyxdp filter`` (issue 17): tcpdump expressions, compiled by libpcap,
translated to eBPF and spliced into the filter's data plane as subprograms.  Every packet
of a varied scapy set gets the verdict of the first rule whose expression libpcap's own
``pcap_offline_filter`` says matches (and whose other fields match), in the kernel and in
the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from scapy.all import ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, Raw
from scapy.layers.dns import DNS, DNSQR

from pyxdp.apps.filter.program import PROGRAM, compiled, load_generation
from pyxdp.apps.filter.rules import RuleError, parse_rules_text
from pyxdp.apps.filter.tables import Sizes, assign_slots, compile_tables
from pyxdp.cbpf.libpcap import compile_expression, offline_filter
from pyxdp.emu import EmuBackend
from pyxdp.kernel import KernelBackend

pytestmark = pytest.mark.kernel

SIZES = Sizes(prefixes4=256, prefixes6=256, rules=64, lists=64, macs=16, patterns=16,
              limits=16, pairs=64, sources=64, talkers=64, talker_sample=1)
RULES = [
    ("dns-queries", "deny", "udp and dst port 53 and udp[10] & 0x80 = 0", None),
    ("ping-ok", "allow", "icmp[icmptype] = icmp-echo", None),
    ("web-from-net", "deny", "tcp dst port 80", "198.19.0.0/16"),
    ("v6-udp", "deny", "ip6 and udp", None),
]


def toml(rules: list[tuple[str, str, str, str | None]], default: str = "allow") -> str:
    out = f'[filter]\ndefault = "{default}"\n'
    for name, action, expr, src in rules:
        out += f'[[rule]]\nname = "{name}"\naction = "{action}"\nexpr = "{expr}"\n'
        if src:
            out += f'src = "{src}"\n'
    return out


def eth() -> Ether:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


PACKETS = [
    eth() / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=999, dport=53)
    / DNS(rd=1, qd=DNSQR(qname="example.org")),
    eth() / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(sport=53, dport=53)
    / DNS(qr=1, qd=DNSQR(qname="example.org")),                  # a response: qr set
    eth() / IP(src="198.18.0.1", dst="198.18.0.2") / ICMP(type=8),
    eth() / IP(src="198.18.0.1", dst="198.18.0.2") / ICMP(type=0),
    eth() / IP(src="198.19.4.4", dst="198.18.0.2") / TCP(dport=80),
    eth() / IP(src="198.18.4.4", dst="198.18.0.2") / TCP(dport=80),   # not from the net
    eth() / IP(src="198.19.4.4", dst="198.18.0.2") / TCP(dport=443),
    eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=7) / Raw(b"x" * 8),
    eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=80),
    eth() / Dot1Q(vlan=3) / IP(src="198.18.0.1", dst="198.18.0.2") / UDP(dport=53)
    / DNS(qd=DNSQR(qname="a.b")),
    eth() / IP(src="198.18.0.1", dst="198.18.0.2", flags="MF") / UDP(dport=53) / Raw(b"y"),
]


def expected(pkt: bytes) -> tuple[int, str | None]:
    import ipaddress

    for name, action, expr, src in RULES:
        if not offline_filter(compile_expression(expr), pkt):
            continue
        if src is not None:
            ip = Ether(pkt).getlayer(IP)
            if ip is None or ipaddress.ip_address(ip.src) not in ipaddress.ip_network(src):
                continue
        return (1 if action == "deny" else 2), name
    return 2, None


@pytest.mark.parametrize("backend", [KernelBackend(), EmuBackend()], ids=["kernel", "emulator"])
def test_expression_rules_agree_with_libpcap(backend: Any) -> None:
    rs = parse_rules_text(toml(RULES), "expr.toml")
    slots = assign_slots(rs.rules, {}, SIZES.rules)
    tables = compile_tables(rs, slots, SIZES)
    assert tables.config["USE_EXPR"] == 1 and len(tables.exprs) == 4
    assert tables.config["FAST4"] == 0
    coll = load_generation(tables, SIZES, backend)
    try:
        stats = compiled().typed_maps(coll)["stats"]

        def hits() -> dict[str, int]:
            return {n: sum(c.packets for c in stats[slots[n]]) for n, *_ in RULES}

        for p in PACKETS:
            pkt = bytes(p)
            want, rule = expected(pkt)
            before = hits()
            got = coll.programs[PROGRAM].run_packet(pkt).retval
            after = hits()
            moved = [n for n in after if after[n] != before[n]]
            assert (got, moved) == (want, [rule] if rule else []), p.summary()
    finally:
        coll.close()


def test_expression_refusals() -> None:
    with pytest.raises(RuleError, match="expr: bad filter expression"):
        parse_rules_text(toml([("bad", "deny", "udp and port fish", None)]))
    with pytest.raises(RuleError, match="expected a tcpdump expression"):
        parse_rules_text('[[rule]]\nname = "x"\nexpr = 5\n')
    five = [(f"r{i}", "deny", f"udp dst port {1000 + i}", None) for i in range(5)]
    rs = parse_rules_text(toml(five))
    with pytest.raises(RuleError, match="more than 4 distinct expr"):
        compile_tables(rs, assign_slots(rs.rules, {}, SIZES.rules), SIZES)


def test_an_expression_survives_the_state_file() -> None:
    from pyxdp.apps.filter.state import normalise_ruleset

    rs = parse_rules_text(toml(RULES[:1]))
    back = normalise_ruleset(rs)
    assert back.rules[0].expr == RULES[0][2]
