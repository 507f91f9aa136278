"""Rule set → map contents (pure): indexes, lists of overlapping rules, slots, port bitmaps,
pattern windows, token-bucket parameters, feature flags, refusals, and the saved state."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import replace

import pytest

from pyxdp.apps.filter import dataplane as dp
from pyxdp.apps.filter.rules import (
    RuleError,
    RuleSet,
    parse_address_list,
    parse_rule,
    parse_rules_text,
)
from pyxdp.apps.filter.state import FilterState, rule_to_dict
from pyxdp.apps.filter.tables import (
    PORT_GROUPS,
    Sizes,
    TableFullError,
    assign_slots,
    compile_tables,
)

SIZES = Sizes(prefixes4=64, prefixes6=64, rules=32, lists=16, macs=8, patterns=8, limits=8,
              pairs=64, sources=64, talkers=64)


def tables(text: str, sizes: Sizes = SIZES):
    rs = parse_rules_text(text, "t.toml")
    return rs, compile_tables(rs, assign_slots(rs.rules, {}, sizes.rules), sizes)


def trie(t, name: str) -> dict[str, int]:
    """The table's contents, whichever lookup holds it (the trie, the per-length hash
    map ``h<name>`` that takes the same keys, or a DIR-k table built from them)."""
    keys, values = t.entries[name]
    held = [x for x in (name, "h" + name) if x in t.tries] + (
        ["dir"] if name in t.dirs else [])
    assert len(held) == 1, held
    n = 8 if name.endswith("4") else 20
    out = {}
    for i in range(len(keys) // n):
        k = keys[i * n:(i + 1) * n]
        (plen,) = struct.unpack_from("<I", k)
        addr = ipaddress.ip_address(k[4:])
        out[f"{addr}/{plen}"] = struct.unpack_from("<I", values, i * 4)[0]
    return out


def test_single_rule_prefixes_are_single_values() -> None:
    _, t = tables('[[rule]]\nname = "a"\nsrc = ["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"]\n')
    assert trie(t, "src4") == {"10.0.0.0/8": dp.SINGLE, "10.1.0.0/16": dp.SINGLE}
    assert trie(t, "src6") == {"2001:db8::/32": dp.SINGLE}
    assert t.lists == {} and t.config["LIST_LEN"] == 1
    assert t.config["USE_SRC4"] == t.config["USE_SRC6"] == 1 and t.config["USE_DST4"] == 0


def test_nested_prefixes_of_several_rules_get_sorted_lists() -> None:
    _, t = tables('''
[[rule]]
name = "inner"
src = "10.1.2.0/24"
[[rule]]
name = "outer"
src = "10.0.0.0/8"
[[rule]]
name = "middle"
src = ["10.1.0.0/16", "192.0.2.0/24"]
''')
    got = trie(t, "src4")
    assert got["10.0.0.0/8"] == dp.SINGLE | 1
    assert got["192.0.2.0/24"] == dp.SINGLE | 2
    lid_mid, lid_in = got["10.1.0.0/16"], got["10.1.2.0/24"]
    assert lid_mid != lid_in and not lid_mid & dp.SINGLE
    entries = [t.lists[lid_in * dp.MAX_LIST + j] for j in range(dp.MAX_LIST)]
    assert entries == [0, 1, 2] + [dp.NO_RULE] * (dp.MAX_LIST - 3)
    assert [t.lists[lid_mid * dp.MAX_LIST + j] for j in range(3)] == [1, 2, dp.NO_RULE]
    assert t.config["LIST_LEN"] == 3


def test_too_many_rules_over_one_address_is_refused() -> None:
    body = "".join(f'[[rule]]\nname = "r{i}"\nsrc = "10.0.0.0/{8 + i}"\n'
                   for i in range(dp.MAX_LIST + 1))
    with pytest.raises(RuleError, match=r"10\.0\.0\.0/16 is covered by 9 rules"):
        tables(body)


def test_rule_kinds_and_flags() -> None:
    _, t = tables('''
[[rule]]
name = "web"
action = "allow"
src = "198.51.100.0/24"
dst = "192.0.2.1/32"
proto = "tcp"
sport = "1024-65535"
dport = ["80", "443"]
tcp_flags = "syn,!ack"
[[rule]]
name = "mac"
src_mac = "02:00:00:00:00:66"
vlan = 7
[[rule]]
name = "misc"
fragment = true
ip_options = false
malformed = true
length = "0-64"
''')
    web, mac, misc = (t.rules[i] for i in range(3))
    assert web.flags == (dp.F_PROTO | dp.F_SPORT | dp.F_DPORT | dp.F_TCPF | dp.F_SRC
                         | dp.F_DST | dp.F_IP)
    assert (web.proto, web.tcp_mask, web.tcp_value) == (6, 0x12, 0x02)
    assert mac.flags == dp.F_DENY | dp.F_MAC | dp.F_VLAN
    assert mac.mac == 0x020000000066 and mac.vlan == 7
    assert misc.flags == (dp.F_DENY | dp.F_FRAG | dp.F_FRAG_V | dp.F_OPTS | dp.F_MALF
                          | dp.F_MALF_V | dp.F_LEN | dp.F_IP)
    assert (misc.len_lo, misc.len_hi) == (0, 64)
    assert t.macs == {0x020000000066: dp.SINGLE | 1}
    assert t.generic == {0: 2}
    # src+dst rule: found through the source trie, its destination checked by pair
    assert t.pairs == {(0, dp.SINGLE | 0): 1}
    assert 1023 not in t.sports and t.sports[1024] == t.sports[65535] == 1
    assert t.dports == {80: 1, 443: 1}
    assert t.config | {} == {**t.config, "USE_PORTS": 1, "USE_TCPF": 1, "USE_VLAN": 1,
                             "USE_MAC": 1, "USE_FLAGS": 1, "USE_LEN": 1, "USE_MACS": 1,
                             "USE_PATTERN": 0, "USE_RATE": 0, "N_GENERIC": 1}


def test_port_groups_shared_and_bounded() -> None:
    body = "".join(f'[[rule]]\nname = "p{i}"\nproto = "udp"\ndport = {i}\n'
                   for i in range(PORT_GROUPS + 1))
    with pytest.raises(RuleError, match="more than 64 distinct dport range lists"):
        tables(body, replace(SIZES, rules=128))
    _, t = tables('[[rule]]\nname = "a"\nproto = "udp"\ndport = 53\nsrc = "10.0.0.0/8"\n'
                  '[[rule]]\nname = "b"\nproto = "tcp"\ndport = 53\nsrc = "11.0.0.0/8"\n')
    assert t.rules[0].dgroup == t.rules[1].dgroup == 0 and t.dports == {53: 1}


def test_pattern_windows_end_where_the_pattern_ends() -> None:
    _, t = tables('[[rule]]\nname = "p"\n'
                  'pattern = { base = "l4", offset = 3, bytes = "aabbcc", mask = "ff0fff" }\n'
                  '[[rule]]\nname = "q"\n'
                  'pattern = { base = "payload", offset = 0, bytes = "00112233445566778899" }\n')
    p, q = t.patterns[0], t.patterns[1]
    assert (p.base, p.end, p.m0, p.v0) == (1, 6, 0, 0)
    assert p.m1.to_bytes(8, "little") == bytes(5) + b"\xff\x0f\xff"
    assert p.v1.to_bytes(8, "little") == bytes(5) + b"\xaa\x0b\xcc"
    window = bytes(6) + bytes.fromhex("00112233445566778899")
    assert (q.base, q.end) == (2, 10)
    assert (q.v0.to_bytes(8, "little") + q.v1.to_bytes(8, "little")) == window
    assert q.m0.to_bytes(8, "little") == bytes(6) + b"\xff\xff"


def test_token_bucket_parameters() -> None:
    _, t = tables('[[rule]]\nname = "r"\nproto = "udp"\n'
                  'rate = { pps = 1000, bps = 8000000, burst = 50, per = "/24,/64" }\n')
    lim = t.limits[0]
    assert (lim.pps, lim.bps) == (1000, 8_000_000)
    assert lim.pkt_cap == 50 * dp.NS and lim.pkt_fill == 50_000_000
    assert lim.bit_cap == 1_000_000 * 8 * dp.NS          # max(50 * 1500, bps / 8) bytes
    assert lim.bit_fill == 1_000_000_000
    assert lim.mask4 == 0xFFFFFF00
    assert lim.mask6_hi == 0xFFFFFFFFFFFFFFFF and lim.mask6_lo == 0
    assert t.rules[0].flags & dp.F_RATE and t.config["USE_RATE"] == 1
    assert lim.byte_cost == 8 * dp.NS
    with pytest.raises(RuleError, match="byte burst of 1649267441664000 bytes"):
        tables('[[rule]]\nname = "r"\nproto = "udp"\nrate = { bps = 8, burst = 1099511627776 }\n')
    with pytest.raises(RuleError, match=r"rate.burst: at most \d+ packets with pps"):
        tables('[[rule]]\nname = "r"\nproto = "udp"\nrate = { pps = 8, burst = 1099511627776 }\n')


def test_byte_rates_above_4_6_gbit_use_coarser_tokens() -> None:
    """One second of nano-bits at 10 Gbit/s overflows 64 bits: used to be refused as a
    "burst too large" the user never gave."""
    _, t = tables('[[rule]]\nname = "r"\nproto = "udp"\nrate = { bps = 10000000000 }\n')
    lim = t.limits[0]
    shift = (8 * dp.NS // lim.byte_cost).bit_length() - 1
    assert shift > 0 and lim.byte_cost << shift == 8 * dp.NS       # exact per-byte cost
    assert lim.bps == 10_000_000_000 >> shift
    assert lim.bit_cap == 1_250_000_000 * lim.byte_cost < 1 << 62     # bps / 8 bytes
    assert lim.bit_fill * lim.bps >= lim.bit_cap


def test_full_tables_and_too_many_generic_rules() -> None:
    many = parse_address_list("\n".join(f"10.0.{i}.0/24" for i in range(65)), name="big")
    with pytest.raises(TableFullError, match=r"65 src4 prefixes, the src4 trie holds 64"):
        compile_tables(RuleSet([many]), {"big": 3}, SIZES)
    body = "".join(f'[[rule]]\nname = "g{i}"\nlength = "0-{i}"\n'
                   for i in range(dp.MAX_GENERIC + 1))
    with pytest.raises(RuleError, match="more than 32 rules without src"):
        tables(body, replace(SIZES, rules=64))
    with pytest.raises(TableFullError, match="more than 2 rules"):
        assign_slots(parse_rules_text('[[rule]]\nname="a"\nvlan=1\n[[rule]]\nname="b"\n'
                                      'vlan=2\n[[rule]]\nname="c"\nvlan=3\n').rules, {}, 2)


def test_slots_are_stable_and_not_reused_at_once() -> None:
    rs = parse_rules_text('[[rule]]\nname = "a"\nvlan = 1\n[[rule]]\nname = "b"\nvlan = 2\n')
    first = assign_slots(rs.rules, {}, 8)
    assert first == {"a": 3, "b": 4}
    rs2 = parse_rules_text('[[rule]]\nname = "c"\nvlan = 3\n[[rule]]\nname = "b"\nvlan = 2\n')
    second = assign_slots(rs2.rules, first, 8)
    assert second == {"b": 4, "c": 5}                   # a's slot 3 stays readable for now
    full = assign_slots(parse_rules_text('[[rule]]\nname = "c"\nvlan = 4\n[[rule]]\n'
                                         'name = "d"\nvlan = 5\n').rules, first, 2)
    assert full == {"c": 3, "d": 4}                      # no fresh slot left: reuse


def test_state_round_trip_keeps_every_field() -> None:
    text = '''
[filter]
default = "deny"
dry_run = true
[[rule]]
name = "all"
action = "deny"
src = ["198.19.0.0/16", "2001:db8:bad::/48"]
dst = "192.0.2.0/24"
proto = "tcp"
sport = ["1-2", "7"]
dport = "80"
tcp_flags = "xmas"
src_mac = "02:00:00:00:00:66"
vlan = 9
fragment = false
ip_options = true
malformed = false
length = "60-1500"
pattern = { base = "l3", offset = 9, bytes = "06", mask = "ff" }
rate = { pps = 10, bps = 800, burst = 3, per = "/24" }
[[rule]]
name = "null"
tcp_flags = "null"
[[rule]]
name = "byte"
proto = "udp"
rate = { bps = 8000 }
'''
    rs = parse_rules_text(text)
    assert all(parse_rule(rule_to_dict(r)) == r for r in rs.rules)
    st = FilterState("veth1", 7, 4026531840, "native", SIZES, rs, {"all": 3, "null": 4,
                                                                   "byte": 5}, 12)
    back = FilterState.from_json(st.to_json(), "state.json")
    assert back.ruleset.rules == rs.rules and back.ruleset.default == rs.default
    assert back.ruleset.dry_run and back.sizes == SIZES and back.generation == 12
    assert back.slots == st.slots and back.mode == "native"
    with pytest.raises(RuleError, match="corrupt filter state"):
        FilterState.from_json("{", "state.json")
    with pytest.raises(RuleError, match="state version"):
        FilterState.from_json('{"version": 99}', "state.json")
