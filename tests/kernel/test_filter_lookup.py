"""The filter's prefix lookup strategies against a plain-Python reference (issue 13).

Random rule sets of source prefixes (hypothesis; IPv4 inside 198.18.0.0/15, IPv6 inside
2001:db8::/32), each compiled with every strategy that can hold it — the LPM trie, and
the per-length hash probe when a table has at most MAX_HASH_LENGTHS lengths — and loaded
in the kernel and the emulator.  For addresses inside and around the prefixes, the rule
whose counter moves must be the one the reference picks: the first rule, in rule order,
with a prefix that contains the address (the filter's semantics: lowest rule wins)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.all import IP, UDP, Ether, IPv6, Raw

from pyxdp.apps.filter.program import PROGRAM, compiled, load_generation
from pyxdp.apps.filter.rules import RuleError, parse_rules_text
from pyxdp.apps.filter.tables import MAX_HASH_LENGTHS, Sizes, assign_slots, compile_tables
from pyxdp.emu import EmuBackend
from pyxdp.kernel import KernelBackend

pytestmark = pytest.mark.kernel

SIZES = Sizes(prefixes4=4096, prefixes6=4096, rules=64, lists=256, macs=16, patterns=16,
              limits=16, pairs=256, sources=64, talkers=64, talker_sample=1)
BASE4 = int(ipaddress.IPv4Address("198.18.0.0"))
BASE6 = int(ipaddress.IPv6Address("2001:db8::"))


@st.composite
def prefix(draw: Any, v6: bool, lengths: list[int]) -> Any:
    plen = draw(st.sampled_from(lengths))
    if v6:
        host = draw(st.integers(0, (1 << 96) - 1))
        return ipaddress.IPv6Network((BASE6 | host, 128), strict=False).supernet(
            new_prefix=plen)
    host = draw(st.integers(0, (1 << 17) - 1))
    return ipaddress.IPv4Network((BASE4 | host, 32)).supernet(new_prefix=plen)


@st.composite
def rule_sets(draw: Any) -> tuple[list[tuple[str, list[Any]]], bool]:
    v6 = draw(st.booleans())
    pool = list(range(33, 129)) if v6 else list(range(15, 33))
    lengths = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6, unique=True))
    rules = []
    for _ in range(draw(st.integers(1, 5))):
        action = draw(st.sampled_from(["allow", "deny"]))
        nets = draw(st.lists(prefix(v6, lengths), min_size=1, max_size=5))
        rules.append((action, nets))
    return rules, v6


def reference(rules: list[tuple[str, list[Any]]], addr: Any) -> int | None:
    for i, (_, nets) in enumerate(rules):
        if any(addr in n for n in nets):
            return i
    return None


def frame(addr: Any) -> bytes:
    l3 = IPv6(src=str(addr), dst="2001:db8::ffff") if addr.version == 6 else IP(
        src=str(addr), dst="198.19.255.254")
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3
                 / UDP(sport=1, dport=2) / Raw(b"x" * 8))


def probes(rules: list[tuple[str, list[Any]]], v6: bool, draw: Any) -> list[Any]:
    out = []
    for _, nets in rules:
        for n in nets:
            out += [n.network_address, n.broadcast_address]
            if n.num_addresses > 2:
                out.append(n.network_address + draw(st.integers(1, n.num_addresses - 2)))
            out.append(n.broadcast_address + 1 if int(n.broadcast_address) + 1 < (
                1 << (128 if v6 else 32)) else n.network_address - 1)
    cls = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
    out.append(cls(BASE6 | draw(st.integers(0, (1 << 96) - 1))) if v6
               else cls(BASE4 | draw(st.integers(0, (1 << 17) - 1))))
    return out


def toml(rules: list[tuple[str, list[Any]]]) -> str:
    body = '[filter]\ndefault = "allow"\n'
    for i, (action, nets) in enumerate(rules):
        body += (f'[[rule]]\nname = "r{i}"\naction = "{action}"\n'
                 f'src = [{", ".join(repr(str(n)) for n in nets)}]\n')
    return body


def matched(coll: Any, slots: dict[str, int], n: int, pkt: bytes) -> int | None:
    stats = compiled().typed_maps(coll)["stats"]

    def counts() -> list[int]:
        return [sum(c.packets for c in stats[slots[f"r{i}"]]) for i in range(n)]

    before = counts()
    coll.programs[PROGRAM].run_packet(pkt)
    moved = [i for i, (a, b) in enumerate(zip(before, counts())) if b != a]
    assert len(moved) <= 1, moved
    return moved[0] if moved else None


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), spec=rule_sets())
def test_every_strategy_finds_the_reference_rule(data: Any, spec: Any) -> None:
    rules, v6 = spec
    try:
        rs = parse_rules_text(toml(rules), "prop.toml")
    except RuleError:                 # a duplicate or contradicting rule: not a rule set
        assume(False)
    slots = assign_slots(rs.rules, {}, SIZES.rules)
    addrs = probes(rules, v6, data.draw)
    want = [reference(rules, a) for a in addrs]
    lengths = {n.prefixlen for _, nets in rules for n in nets}
    tried = []
    for strategy in ("lpm", "hash"):
        try:
            tables = compile_tables(rs, slots, SIZES, strategy=strategy)
        except RuleError as e:
            assert strategy == "hash" and len(lengths) > MAX_HASH_LENGTHS, e
            continue
        idx = ("src6" if v6 else "src4")
        assert (idx in tables.hash_lengths) == (strategy == "hash")
        for backend in (KernelBackend(), EmuBackend()):
            coll = load_generation(tables, SIZES, backend)
            try:
                got = [matched(coll, slots, len(rules), frame(a)) for a in addrs]
            finally:
                coll.close()
            assert got == want, (strategy, backend.name, [str(a) for a in addrs])
        tried.append(strategy)
    assert "lpm" in tried
    if len(lengths) <= MAX_HASH_LENGTHS:
        assert "hash" in tried


def test_auto_picks_hash_for_few_lengths_and_the_trie_for_many() -> None:
    few = parse_rules_text(toml([("deny", [ipaddress.ip_network("198.18.1.0/24"),
                                           ipaddress.ip_network("198.18.2.7/32")])]), "a")
    many = parse_rules_text(toml([("deny", [ipaddress.ip_network(f"198.18.0.0/{n}")
                                            for n in range(16, 22)])]), "b")
    t_few = compile_tables(few, assign_slots(few.rules, {}, 64), SIZES)
    t_many = compile_tables(many, assign_slots(many.rules, {}, 64), SIZES)
    assert t_few.hash_lengths == {"src4": [32, 24]} and "hsrc4" in t_few.tries
    assert t_few.config["HASH_S4"] == 2 and t_few.config["MS4_1"] == 0xFFFFFF00
    assert t_many.hash_lengths == {} and "src4" in t_many.tries
    assert t_many.config.get("HASH_S4", 0) == 0
    with pytest.raises(RuleError, match="at most 4"):
        compile_tables(many, assign_slots(many.rules, {}, 64), SIZES, strategy="hash")
    with pytest.raises(ValueError, match="lookup strategy"):
        compile_tables(many, assign_slots(many.rules, {}, 64), SIZES, strategy="dir")
