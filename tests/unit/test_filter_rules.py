"""Filter rule files and lists: what parses, and every refusal naming file, line and rule."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxdp.apps.filter.rules import (
    Action,
    PortRange,
    RuleError,
    load_rules,
    parse_address_list,
    parse_rule,
    parse_rules_text,
)

GOOD = """
[filter]
default = "allow"
dry_run = true

[[rule]]
name = "bad-net"
src = ["198.19.0.0/16", "2001:db8:bad::/48"]

[[rule]]
name = "syn-flood"
proto = "tcp"
dport = ["80", "8000-8080"]
tcp_flags = "syn,!ack"
rate = { pps = 1000, per = "/24" }

[[rule]]
name = "dns-any"
proto = "udp"
dport = 53
pattern = { base = "payload", offset = 12, bytes = "00ff", mask = "ffff" }

[[rule]]
name = "tiny"
length = "0-59"
action = "deny"

[[rule]]
name = "office"
action = "allow"
src = "198.18.10.0/24"
"""


def test_good_file_parses_every_kind() -> None:
    rs = parse_rules_text(GOOD, "good.toml")
    assert rs.default is Action.ALLOW and rs.dry_run
    names = [r.name for r in rs.rules]
    assert names == ["bad-net", "syn-flood", "dns-any", "tiny", "office"]
    bad, syn, dns, tiny, office = rs.rules
    assert bad.src == (ipaddress.ip_network("198.19.0.0/16"),
                       ipaddress.ip_network("2001:db8:bad::/48"))
    assert bad.where == "good.toml:6"
    assert syn.proto == 6 and syn.dport == (PortRange(80, 80), PortRange(8000, 8080))
    assert syn.tcp_flags == (0x12, 0x02) and syn.rate.pps == 1000 and syn.rate.prefix4 == 24
    assert dns.pattern.value == b"\x00\xff" and dns.pattern.offset == 12
    assert tiny.length == (0, 59) and office.action is Action.ALLOW


@pytest.mark.parametrize(("body", "message"), [
    ('src = "198.19.0.1/16"', "did you mean 198.19.0.0/16"),
    ('src = "198.19.0.0/33"', "bad prefix"),
    ('dport = 80', "needs proto"),
    ('proto = "tcp"\ndport = "90-80"', "lo <= hi"),
    ('proto = "tcp"\ndport = 70000', "lo <= hi"),
    ('proto = "sctpx"', "expected one of"),
    ('tcp_flags = "syn,bogus"', "unknown flag 'bogus'"),
    ('src_mac = "zz:00:00:00:00:00"', "aa:bb:cc:dd:ee:ff"),
    ('vlan = 5000', "0..4095"),
    ('length = "10"', "lo-hi"),
    ('pattern = { bytes = "0g" }', "is not hex"),
    ('pattern = { bytes = "00112233445566778899aabbccddeeff00" }', "1..16 bytes"),
    ('pattern = { bytes = "00", mask = "ffff" }', "as long as"),
    ('rate = { burst = 5 }\nsrc = "198.19.0.0/16"', "give pps, bps"),
    ('action = "allow"\nrate = { pps = 5 }\nsrc = "198.19.0.0/16"', "use action"),
    ('action = "reject"\nsrc = "198.19.0.0/16"', "allow or deny"),
    ('srcc = "198.19.0.0/16"', "unknown key(s) srcc"),
    ('comment = "nothing here"', "matches nothing"),
    ('proto = "icmp"\nsrc = "2001:db8::/32"', "do not fit"),
])
def test_bad_rules_name_file_line_and_rule(body: str, message: str) -> None:
    text = f'[filter]\ndefault = "deny"\n\n[[rule]]\nname = "r1"\n{body}\n'
    with pytest.raises(RuleError) as exc:
        parse_rules_text(text, "bad.toml")
    err = exc.value
    assert message in str(err)
    assert err.where == "bad.toml:4" and err.rule == "r1"
    assert str(err).startswith("bad.toml:4: rule 'r1': ")


def test_whole_set_refusals() -> None:
    dup = '[[rule]]\nname = "a"\nsrc = "198.19.0.0/16"\n[[rule]]\nname = "a"\nsrc = "198.20.0.0/16"\n'
    with pytest.raises(RuleError, match="duplicate rule name"):
        parse_rules_text(dup, "f")
    same = '[[rule]]\nname = "a"\nsrc = "198.19.0.0/16"\n[[rule]]\nname = "b"\nsrc = "198.19.0.0/16"\n'
    with pytest.raises(RuleError, match="duplicates rule 'a'"):
        parse_rules_text(same, "f")
    contra = same.replace('name = "b"', 'name = "b"\naction = "allow"')
    with pytest.raises(RuleError, match=r"contradicts rule 'a' \(f:1\)") as exc:
        parse_rules_text(contra, "f")
    assert exc.value.where == "f:4"
    with pytest.raises(RuleError, match="TOML syntax"):
        parse_rules_text("[[rule]\nname=", "f")
    with pytest.raises(RuleError, match="unknown table"):
        parse_rules_text("[rules]\n", "f")
    with pytest.raises(RuleError, match="cannot read rule file"):
        load_rules("/nonexistent/rules.toml")


def test_address_list_is_one_rule_and_names_bad_lines() -> None:
    text = "# firehol level1\n198.19.0.0/16\n198.20.1.7 ; one host\n\n2001:db8:bad::/48\n"
    rule = parse_address_list(text, "l1.netset", name="firehol")
    assert rule.name == "firehol" and len(rule.src) == 3
    assert ipaddress.ip_network("198.20.1.7/32") in rule.src
    with pytest.raises(RuleError, match=r"l1.netset:2: rule 'x': not an address"):
        parse_address_list("198.19.0.0/16\nnot-an-ip\n", "l1.netset", name="x")


def test_api_rules_use_the_same_validation() -> None:
    r = parse_rule({"name": "x", "src": "198.19.0.0/16", "proto": 17, "sport": "1-2"})
    assert r.proto == 17 and r.sport == (PortRange(1, 2),)
    with pytest.raises(RuleError, match="name:"):
        parse_rule({"name": "bad name!", "src": "198.19.0.0/16"})


@given(st.text(max_size=300))
def test_fuzzed_rule_files_only_raise_rule_error(text: str) -> None:
    with contextlib.suppress(RuleError):
        parse_rules_text(text, "fuzz.toml")


def test_the_example_rule_file_parses() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "filter_rules.toml"
    rs = load_rules(path)
    assert [r.name for r in rs.rules][:3] == ["bad-nets", "office", "syn-flood"]
    assert rs.rules[1].action is Action.ALLOW


# -- review fixes ---------------------------------------------------------------------------
def test_empty_port_list_is_refused_not_any_port() -> None:
    with pytest.raises(RuleError, match="dport: empty list"):
        parse_rule({"name": "x", "proto": "udp", "dport": []})
    with pytest.raises(RuleError, match="sport: empty list"):
        parse_rule({"name": "x", "proto": "tcp", "sport": []})


def test_rule_words_refuse_a_key_given_as_value_and_table() -> None:
    from pyxdp.apps.filter.rules import parse_rule_words, rule_words_table

    for words in (["rate=5", "rate.pps=1"], ["rate.pps=1", "rate=5"], ["vlan=1", "vlan=2"]):
        with pytest.raises(RuleError, match="given more than once"):
            rule_words_table("x", ["src=10.0.0.0/8", *words])
    assert rule_words_table("x", ["rate.pps=1", "rate.burst=2"])["rate"] == {"pps": 1,
                                                                            "burst": 2}
    rule = parse_rule_words("web", ["proto=tcp", "dport=80,443", "fragment=no"])
    assert rule.name == "web" and rule.proto == 6 and rule.fragment is False
    assert [(p.lo, p.hi) for p in rule.dport] == [(80, 80), (443, 443)]
    for words, message in ((["nonsense"], "expected key=value"),
                           (["vlan=x"], "vlan: expected an integer"),
                           (["fragment=maybe"], "expected true or false")):
        with pytest.raises(RuleError, match=message):
            parse_rule_words("x", words)


def test_address_list_name_is_validated() -> None:
    with pytest.raises(RuleError, match="name: 1-64 characters"):
        parse_address_list("198.19.0.0/16\n", "l.txt", name="bad name")
    with pytest.raises(RuleError, match="name: 1-64 characters"):
        parse_address_list("198.19.0.0/16\n", "l.txt", name="")


def test_hand_built_rules_are_refused_unless_they_survive_the_state_file() -> None:
    from pyxdp.apps.filter.rules import Pattern, Rule, RuleSet
    from pyxdp.apps.filter.state import normalise_ruleset

    net = (ipaddress.ip_network("198.19.0.0/16"),)
    bad = [
        Rule("bad name!", src=net),
        Rule("no-proto", src=net, dport=(PortRange(80, 80),)),          # dport needs proto
        Rule("nothing"),                                                # matches nothing
        Rule("unmasked", pattern=Pattern("l3", 0, b"\xff", b"\x0f")),   # value & mask
        Rule("junk", src=("198.19.0.0/16",)),                           # type: ignore
        Rule("allow-rate", action=Action.ALLOW, src=net, rate=None, proto=300),
    ]
    for r in bad:
        with pytest.raises(RuleError):
            normalise_ruleset(RuleSet([r]))
    good = Rule("fine", src=net, proto=17, dport=(PortRange(53, 53),), where="mine")
    out = normalise_ruleset(RuleSet([good], Action.DENY))
    assert out.rules == [good] and out.rules[0].where == "mine"
    assert out.default is Action.DENY


def test_unnamed_rules_keep_their_names_when_others_are_inserted() -> None:
    a = '[[rule]]\nsrc = "198.19.0.0/16"\n'
    b = '[[rule]]\nproto = "udp"\ndport = 53\n'
    new = '[[rule]]\nproto = "tcp"\ndport = 22\n'
    before = [r.name for r in parse_rules_text(a + b).rules]
    after = [r.name for r in parse_rules_text(new + a + b).rules]
    assert after[1:] == before and len(set(after)) == 3
    assert all(n.startswith("rule-") for n in after)
    # the name only depends on what the rule matches (and does)
    assert parse_rule({"src": "198.19.0.0/16"}).name == before[0]
    assert parse_rule({"src": "198.19.0.0/16", "action": "allow"}).name != before[0]


def test_expr_from_rule_words_keeps_its_equals_sign() -> None:
    from pyxdp.apps.filter.rules import parse_rule_words

    r = parse_rule_words("dns-q", ["expr=udp and dst port 53 and udp[10] & 0x80 = 0",
                                   "src=198.19.0.0/16"])
    assert r.expr == "udp and dst port 53 and udp[10] & 0x80 = 0"
    assert [str(n) for n in r.src] == ["198.19.0.0/16"]
