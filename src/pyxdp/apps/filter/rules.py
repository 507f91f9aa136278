"""Filter rules: the model, the TOML rule file, plain address lists, and validation.

A rule matches on any combination of fields; every field it names must match.  Errors name
the file, the line and the rule, and a rule set is validated whole before anything is
applied (nothing is ever half-applied).

Rule file (TOML)::

    [filter]
    default = "allow"          # or "deny"
    dry_run = false            # count what would be dropped, drop nothing

    [[rule]]
    name = "bad-net"
    action = "deny"            # deny | allow
    src = ["198.19.0.0/16", "2001:db8:bad::/48"]
    proto = "tcp"              # tcp | udp | icmp | icmpv6 | a number
    dport = "1-1023"           # a port, "lo-hi", or a list of those
    tcp_flags = "syn,!ack"     # or "xmas", "null"; "!" means must be clear
    rate = { pps = 1000, burst = 2000, per = "source" }   # deny above the rate

A rule without ``name`` is called ``rule-<hash of what it matches>``, so inserting
another rule does not move its counters and rate state.

Other match fields: ``dst``, ``sport``, ``expr = "udp and dst port 53 and udp[10] & 0x80 = 0"``
(tcpdump syntax, compiled by libpcap, at most 4 distinct expressions per rule set),
``src_mac``, ``vlan``, ``fragment``, ``ip_options``,
``malformed``, ``length = "0-64"``, ``pattern = { base = "payload", offset = 2,
bytes = "0100", mask = "ff00" }`` (``base``: ``l3``, ``l4`` or ``payload``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from pyxdp.apps.filter.prefixes import PrefixError, Prefixes
from pyxdp.errors import PyxdpError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PROTOS = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "icmpv6": 58}
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20,
             "ece": 0x40, "cwr": 0x80}
TCP_PRESETS = {"xmas": (0x29, 0x29), "null": (0xFF, 0x00), "syn-flood": (0x12, 0x02)}
MATCH_FIELDS = ("src", "dst", "expr", "proto", "sport", "dport", "src_mac", "vlan", "tcp_flags",
                "fragment", "ip_options", "malformed", "length", "pattern")
KNOWN_KEYS = {"name", "action", "rate", "comment", *MATCH_FIELDS}
MAX_PATTERN = 16
MAX_PATTERN_OFFSET = 1500


class RuleError(PyxdpError, ValueError):
    """A bad rule: ``where`` is ``file:line`` (or the API call) and ``rule`` its name."""

    def __init__(self, message: str, where: str = "", rule: str = "") -> None:
        self.where = where
        self.rule = rule
        self.reason = message
        head = where
        if rule:
            head = f"{head}: rule {rule!r}" if head else f"rule {rule!r}"
        super().__init__(f"{head}: {message}" if head else message)


class Action(Enum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class PortRange:
    lo: int
    hi: int

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


@dataclass(frozen=True)
class Pattern:
    base: str          # l3 | l4 | payload
    offset: int
    value: bytes
    mask: bytes


@dataclass(frozen=True)
class RateLimit:
    pps: int = 0       # 0: no packet limit
    bps: int = 0       # bits per second, 0: no byte limit
    burst: int = 0     # packets (and burst * 1500 bytes); default: one second's worth
    prefix4: int = 32  # per source address (32/128) or per prefix
    prefix6: int = 128


@dataclass(frozen=True)
class Rule:
    name: str
    action: Action = Action.DENY
    src: Prefixes | tuple[Network, ...] = ()      # parsed rules hold Prefixes (packed)
    dst: Prefixes | tuple[Network, ...] = ()
    expr: str | None = None      # a tcpdump expression (libpcap syntax)
    proto: int | None = None
    sport: tuple[PortRange, ...] = ()
    dport: tuple[PortRange, ...] = ()
    src_mac: bytes | None = None
    vlan: int | None = None
    tcp_flags: tuple[int, int] | None = None   # (mask, value)
    fragment: bool | None = None
    ip_options: bool | None = None
    malformed: bool | None = None
    length: tuple[int, int] | None = None
    pattern: Pattern | None = None
    rate: RateLimit | None = None
    where: str = field(default="", compare=False)

    def match_key(self) -> tuple[Any, ...]:
        """What the rule matches, without its name and action (to find contradictions)."""
        return tuple(getattr(self, f) for f in MATCH_FIELDS)


@dataclass
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    default: Action = Action.ALLOW
    dry_run: bool = False

    def validate(self) -> RuleSet:
        """Whole-set checks: unique names, no duplicates, no contradictions."""
        names: dict[str, Rule] = {}
        keys: dict[tuple[Any, ...], Rule] = {}
        for r in self.rules:
            if r.name in names:
                raise RuleError(f"duplicate rule name (first at {names[r.name].where})",
                                r.where, r.name)
            names[r.name] = r
            k = r.match_key()
            if k in keys:
                other = keys[k]
                if other.action != r.action or other.rate != r.rate:
                    raise RuleError(f"contradicts rule {other.name!r} ({other.where}): same"
                                    f" match, {other.action.value} vs {r.action.value}",
                                    r.where, r.name)
                raise RuleError(f"duplicates rule {other.name!r} ({other.where})", r.where,
                                r.name)
            keys[k] = r
        return self


# -- parsing of single fields ----------------------------------------------------------------
def _address_sanity(text: str, what: str, where: str, rule: str) -> None:
    """Refuse addresses that parse but cannot mean what they say in a filter."""
    if "%" in text:
        raise RuleError(f"{what}: {text!r} has a scope (%zone): a zone is not part of a"
                        " packet's address; write the address without it", where, rule)
    addr = text.split("/", 1)[0]
    if ":" in addr:
        try:
            mapped = ipaddress.IPv6Address(addr).ipv4_mapped
        except ValueError:
            return
        if mapped is not None:
            raise RuleError(f"{what}: {text!r} is an IPv4-mapped IPv6 address, which never"
                            f" matches IPv4 traffic at XDP; write {mapped} instead",
                            where, rule)



def _networks(value: Any, where: str, rule: str, what: str) -> Prefixes:
    if isinstance(value, Prefixes):
        if not value:
            raise RuleError(f"{what}: empty list", where, rule)
        return value
    if isinstance(value, dict) and "packed" in value:      # a state file's packed set
        try:
            return Prefixes.from_state(value)
        except ValueError as e:
            raise RuleError(f"{what}: {e}", where, rule) from None
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if not isinstance(item, str):
            raise RuleError(f"{what}: expected a prefix string, got {item!r}", where, rule)
        _address_sanity(item.strip(), what, where, rule)
        try:
            net = ipaddress.ip_network(item.strip(), strict=True)
        except ValueError as e:
            hint = ""
            try:
                fixed = ipaddress.ip_network(item.strip(), strict=False)
                hint = f" (did you mean {fixed}?)"
            except ValueError:
                pass
            raise RuleError(f"{what}: bad prefix {item!r}: {e}{hint}", where, rule) from None
        out.append(net)
    if not out:
        raise RuleError(f"{what}: empty list", where, rule)
    return Prefixes.from_networks(out)


def _expr(value: Any, where: str, rule: str) -> str:
    """A tcpdump expression, compiled by libpcap and translated now, so a rule set with an
    expression the filter cannot run is refused before anything is applied."""
    if not isinstance(value, str) or not value.strip():
        raise RuleError(f"expr: expected a tcpdump expression string, got {value!r}", where,
                        rule)
    if len(value) > 1024:
        raise RuleError(f"expr: {len(value)} characters, at most 1024", where, rule)
    from pyxdp.cbpf import CbpfError, translate
    from pyxdp.cbpf.libpcap import compile_expression
    try:
        translate(compile_expression(value))
    except CbpfError as e:
        raise RuleError(f"expr: {e}", where, rule) from None
    except OSError as e:                 # no libpcap on this machine
        raise RuleError(f"expr: libpcap is needed to compile expressions ({e})", where,
                        rule) from None
    return value.strip()


def _ports(value: Any, where: str, rule: str, what: str) -> tuple[PortRange, ...]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        text = str(item).strip()
        m = re.fullmatch(r"([0-9]{1,5})(?:\s*-\s*([0-9]{1,5}))?", text)
        if not m or isinstance(item, bool):
            raise RuleError(f"{what}: expected a port or 'lo-hi', got {item!r}", where, rule)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if not 0 <= lo <= hi <= 65535:
            raise RuleError(f"{what}: port range {text!r} must satisfy 0 <= lo <= hi <= 65535",
                            where, rule)
        out.append(PortRange(lo, hi))
    if not out:
        # an empty tuple is what "any port" looks like in a Rule: ``dport = []`` must not
        # silently widen a rule to every port
        raise RuleError(f"{what}: empty list", where, rule)
    return tuple(out)


def _proto(value: Any, where: str, rule: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    if isinstance(value, str) and value.lower() in PROTOS:
        return PROTOS[value.lower()]
    raise RuleError(f"proto: expected one of {', '.join(PROTOS)} or 0..255, got {value!r}",
                    where, rule)


def _tcp_flags(value: Any, where: str, rule: str) -> tuple[int, int]:
    if not isinstance(value, str):
        raise RuleError(f"tcp_flags: expected a string like 'syn,!ack', got {value!r}",
                        where, rule)
    text = value.strip().lower()
    if text in TCP_PRESETS:
        return TCP_PRESETS[text]
    mask = val = 0
    for part in text.split(","):
        part = part.strip()
        neg = part.startswith("!")
        name = part.lstrip("!")
        if name not in TCP_FLAGS:
            raise RuleError(f"tcp_flags: unknown flag {name!r} (use {', '.join(TCP_FLAGS)},"
                            f" or {', '.join(TCP_PRESETS)})", where, rule)
        bit = TCP_FLAGS[name]
        mask |= bit
        if not neg:
            val |= bit
    return mask, val


def _mac(value: Any, where: str, rule: str) -> bytes:
    if isinstance(value, str) and re.fullmatch(r"([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}", value):
        return bytes(int(x, 16) for x in re.split("[:-]", value))
    raise RuleError(f"src_mac: expected aa:bb:cc:dd:ee:ff, got {value!r}", where, rule)


def _range(value: Any, where: str, rule: str, what: str, top: int) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", str(value).strip())
    if not m:
        raise RuleError(f"{what}: expected 'lo-hi', got {value!r}", where, rule)
    lo, hi = int(m.group(1)), int(m.group(2))
    if not 0 <= lo <= hi <= top:
        raise RuleError(f"{what}: range must satisfy 0 <= lo <= hi <= {top}", where, rule)
    return lo, hi


def _hex(value: Any, where: str, rule: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise RuleError(f"pattern.{what}: expected hex digits, got {value!r}", where, rule)
    try:
        return bytes.fromhex(value.replace(" ", "").replace(":", ""))
    except ValueError:
        raise RuleError(f"pattern.{what}: {value!r} is not hex", where, rule) from None


def _pattern(value: Any, where: str, rule: str) -> Pattern:
    if not isinstance(value, dict):
        raise RuleError("pattern: expected a table {base, offset, bytes, mask}", where, rule)
    unknown = set(value) - {"base", "offset", "bytes", "mask"}
    if unknown:
        raise RuleError(f"pattern: unknown key(s) {', '.join(sorted(unknown))}", where, rule)
    base = value.get("base", "payload")
    if base not in ("l3", "l4", "payload"):
        raise RuleError(f"pattern.base: expected l3, l4 or payload, got {base!r}", where, rule)
    offset = value.get("offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) \
            or not 0 <= offset <= MAX_PATTERN_OFFSET:
        raise RuleError(f"pattern.offset: expected 0..{MAX_PATTERN_OFFSET}, got {offset!r}",
                        where, rule)
    data = _hex(value.get("bytes"), where, rule, "bytes")
    mask = _hex(value["mask"], where, rule, "mask") if "mask" in value else b"\xff" * len(data)
    if not 1 <= len(data) <= MAX_PATTERN:
        raise RuleError(f"pattern.bytes: 1..{MAX_PATTERN} bytes, got {len(data)}", where, rule)
    if len(mask) != len(data):
        raise RuleError("pattern.mask must be as long as pattern.bytes", where, rule)
    return Pattern(base, offset, bytes(b & m for b, m in zip(data, mask)), mask)


def _rate(value: Any, where: str, rule: str) -> RateLimit:
    if not isinstance(value, dict):
        raise RuleError("rate: expected a table {pps, bps, burst, per}", where, rule)
    unknown = set(value) - {"pps", "bps", "burst", "per"}
    if unknown:
        raise RuleError(f"rate: unknown key(s) {', '.join(sorted(unknown))}", where, rule)
    nums = {}
    for k in ("pps", "bps", "burst"):
        v = value.get(k, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 1 << 40:
            raise RuleError(f"rate.{k}: expected a non-negative integer, got {v!r}", where, rule)
        nums[k] = v
    if not nums["pps"] and not nums["bps"]:
        raise RuleError("rate: give pps, bps or both", where, rule)
    per = value.get("per", "source")
    if per == "source":
        p4, p6 = 32, 128
    elif isinstance(per, str) and re.fullmatch(r"/\d+(,/\d+)?", per):
        parts = [int(x) for x in per.replace("/", "").split(",")]
        p4 = parts[0]
        p6 = parts[1] if len(parts) > 1 else 64
        if not (0 <= p4 <= 32 and 0 <= p6 <= 128):
            raise RuleError(f"rate.per: prefix lengths out of range in {per!r}", where, rule)
    else:
        raise RuleError(f"rate.per: expected 'source' or '/24' or '/24,/64', got {per!r}",
                        where, rule)
    burst = nums["burst"] or max(nums["pps"], 1)
    return RateLimit(nums["pps"], nums["bps"], burst, p4, p6)


NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def check_name(name: Any, where: str = "") -> str:
    """A rule name as the rule file, the state file and the metrics accept it."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RuleError(f"name: 1-64 characters [A-Za-z0-9_.:-], got {name!r}", where)
    return name


def default_name(rule: Rule) -> str:
    """``rule-<hash of the match>``: stable when other rules are inserted or removed (a
    positional name would hand one rule's counters and rate state to another)."""
    key = tuple((tuple(v) if len(v) <= 64 else v.digest()) if isinstance(v, Prefixes) else v
                for v in rule.match_key())      # all of a big set, not its repr's head
    digest = hashlib.sha256(repr((key, rule.action.value)).encode())
    return f"rule-{digest.hexdigest()[:10]}"


def parse_rule(data: dict[str, Any], where: str = "", index: int = 0) -> Rule:
    """One rule from a TOML table (or a dict from the Python API / CLI).  An unnamed
    rule is named by :func:`default_name` (``index`` is kept for callers' compatibility)."""
    named = "name" in data
    name = check_name(data["name"], where) if named else "unnamed"
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise RuleError(f"unknown key(s) {', '.join(sorted(unknown))}; known: "
                        f"{', '.join(sorted(KNOWN_KEYS))}", where, name)
    try:
        action = Action(data.get("action", "deny"))
    except ValueError:
        raise RuleError(f"action: expected allow or deny, got {data.get('action')!r}", where,
                        name) from None
    kw: dict[str, Any] = {"name": name, "action": action, "where": where}
    if "src" in data:
        kw["src"] = _networks(data["src"], where, name, "src")
    if "dst" in data:
        kw["dst"] = _networks(data["dst"], where, name, "dst")
    if "expr" in data:
        kw["expr"] = _expr(data["expr"], where, name)
    if "proto" in data:
        kw["proto"] = _proto(data["proto"], where, name)
    for k in ("sport", "dport"):
        if k in data:
            kw[k] = _ports(data[k], where, name, k)
            if kw.get("proto") not in (PROTOS["tcp"], PROTOS["udp"]):
                raise RuleError(f"{k} needs proto = \"tcp\" or \"udp\"", where, name)
    if "tcp_flags" in data:
        kw["tcp_flags"] = _tcp_flags(data["tcp_flags"], where, name)
        if kw.get("proto", PROTOS["tcp"]) != PROTOS["tcp"]:
            raise RuleError("tcp_flags needs proto = \"tcp\"", where, name)
        kw["proto"] = PROTOS["tcp"]
    if "src_mac" in data:
        kw["src_mac"] = _mac(data["src_mac"], where, name)
    if "vlan" in data:
        v = data["vlan"]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 4095:
            raise RuleError(f"vlan: expected 0..4095, got {v!r}", where, name)
        kw["vlan"] = v
    for k in ("fragment", "ip_options", "malformed"):
        if k in data:
            if not isinstance(data[k], bool):
                raise RuleError(f"{k}: expected true or false, got {data[k]!r}", where, name)
            kw[k] = data[k]
    if "length" in data:
        kw["length"] = _range(data["length"], where, name, "length", 65535)
    if "pattern" in data:
        kw["pattern"] = _pattern(data["pattern"], where, name)
    if "rate" in data:
        if action != Action.DENY:
            raise RuleError("rate limits drop above the rate: use action = \"deny\"", where,
                            name)
        kw["rate"] = _rate(data["rate"], where, name)
    rule = Rule(**kw)
    if not any(getattr(rule, f) not in (None, ()) for f in MATCH_FIELDS):
        raise RuleError("matches nothing: give at least one match field"
                        f" ({', '.join(MATCH_FIELDS)})", where, name)
    if not named:
        rule = replace(rule, name=default_name(rule))
        name = rule.name
    fams = _versions(rule.src) | _versions(rule.dst)
    v4_only, v6_only = PROTOS["icmp"], PROTOS["icmpv6"]
    if (rule.proto == v4_only and 6 in fams) or (rule.proto == v6_only and 4 in fams):
        raise RuleError("ICMP is IPv4 and ICMPv6 is IPv6: the prefixes do not fit the proto",
                        where, name)
    return rule


def _versions(nets: Any) -> set[int]:
    if isinstance(nets, Prefixes):
        return nets.versions()
    return {n.version for n in nets}


def _rule_lines(text: str) -> list[int]:
    """Line numbers of each ``[[rule]]`` header, in order."""
    return [i + 1 for i, ln in enumerate(text.splitlines())
            if re.match(r"\s*\[\[\s*rule\s*\]\]", ln)]


def parse_rules_text(text: str, filename: str = "<rules>") -> RuleSet:
    """Parse and validate a TOML rule file's text."""
    _check_toml_shape(text, filename)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RuleError(f"TOML syntax: {e}", filename) from None
    except RecursionError:
        raise RuleError("TOML nested too deeply", filename) from None
    except ValueError as e:          # e.g. an integer with more digits than Python takes
        raise RuleError(f"TOML value refused: {e}", filename) from None
    unknown = set(doc) - {"filter", "rule"}
    if unknown:
        raise RuleError(f"unknown table(s) {', '.join(sorted(unknown))}: use [filter] and"
                        " [[rule]]", filename)
    top = doc.get("filter", {})
    if not isinstance(top, dict) or set(top) - {"default", "dry_run"}:
        raise RuleError("[filter] takes default and dry_run only", filename)
    try:
        default = Action(top.get("default", "allow"))
    except ValueError:
        raise RuleError(f"[filter] default: expected allow or deny, got {top['default']!r}",
                        filename) from None
    dry = top.get("dry_run", False)
    if not isinstance(dry, bool):
        raise RuleError("[filter] dry_run: expected true or false", filename)
    lines = _rule_lines(text)
    raw = doc.get("rule", [])
    if not isinstance(raw, list):
        raise RuleError("rules must be [[rule]] tables", filename)
    rules = []
    for i, table in enumerate(raw):
        where = f"{filename}:{lines[i]}" if i < len(lines) else filename
        if not isinstance(table, dict):
            raise RuleError(f"rule #{i + 1} is {table!r}, not a [[rule]] table", where)
        rules.append(parse_rule(table, where, i + 1))
    return RuleSet(rules, default, dry).validate()


#: a rule file larger than this is refused before parsing (address lists of any size go
#: through ``filter import``, which streams them)
MAX_RULE_FILE = 64 << 20
MAX_KEY_PARTS = 16
MAX_NESTING = 32


def _check_toml_shape(text: str, filename: str) -> None:
    """Bound what makes TOML parsing slow or deep before parsing: dotted keys with many
    parts (quadratic in tomllib) and deeply nested arrays or tables."""
    for i, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if not stripped or stripped[0] == "#":
            continue
        head = stripped.split("=", 1)[0] if not stripped.startswith("[") else stripped
        if head.count(".") >= MAX_KEY_PARTS:
            raise RuleError(f"a key with {head.count('.') + 1} dotted parts (at most"
                            f" {MAX_KEY_PARTS})", f"{filename}:{i}")
        depth = max(stripped.count("["), stripped.count("{"))
        if depth > MAX_NESTING:
            raise RuleError(f"nesting {depth} deep (at most {MAX_NESTING})", f"{filename}:{i}")


def read_text_file(path: str | Path, what: str, limit: int | None = MAX_RULE_FILE) -> str:
    """A UTF-8 text file's contents, with one clear error for what it cannot be."""
    p = Path(path)
    try:
        if p.is_dir():
            raise RuleError(f"cannot read {what}: it is a directory", str(p))
        if limit is not None and p.stat().st_size > limit:
            raise RuleError(f"{what} of {p.stat().st_size:,} bytes: at most {limit:,}",
                            str(p))
        return p.read_text()
    except UnicodeDecodeError as e:
        raise RuleError(f"{what} is not text (not UTF-8 at byte {e.start})", str(p)) from None
    except OSError as e:
        raise RuleError(f"cannot read {what}: {e.strerror}", str(p)) from None


def load_rules(path: str | Path) -> RuleSet:
    return parse_rules_text(read_text_file(path, "rule file"), str(path))


def parse_address_list(text: str, filename: str = "<list>", *, name: str = "list",
                       action: Action = Action.DENY, direction: str = "src") -> Rule:
    """A plain list (ipset/FireHOL style: one address or prefix per line, ``#``/``;``
    comments) as ONE rule matching any of its prefixes, so a million-line list is one rule
    with one counter.  Host bits are cleared, as those lists expect."""
    check_name(name, filename)
    if direction not in ("src", "dst"):
        raise RuleError(f"direction must be src or dst, not {direction!r}", filename, name)
    lines: list[int] = []
    entries: list[str] = []
    for i, line in enumerate(text.splitlines(), 1):
        if "#" in line or ";" in line:
            line = re.split(r"[#;]", line, maxsplit=1)[0]
        entry = line.strip()
        if entry:
            lines.append(i)
            entries.append(entry)
    if not entries:
        raise RuleError("the list holds no address", filename, name)
    try:
        prefixes = Prefixes.parse(entries, strict=False)
    except PrefixError as e:
        raise RuleError(str(e), f"{filename}:{lines[e.index]}", name) from None
    if direction == "src":
        return Rule(name, action, src=prefixes, where=filename)
    return Rule(name, action, dst=prefixes, where=filename)


_WORD_LISTS = {"src", "dst", "sport", "dport"}
_WORD_INTS = {"vlan", "rate.pps", "rate.bps", "rate.burst", "pattern.offset"}
_WORD_BOOLS = {"fragment", "ip_options", "malformed"}


def rule_words_table(name: str, words: list[str], where: str = "command line"
                     ) -> dict[str, Any]:
    """``key=value`` words (``src=198.19.0.0/16 proto=tcp dport=80,443 rate.pps=1000``)
    as the table a rule file would hold for rule ``name``: lists split at commas, numbers
    and booleans typed, ``a.b`` keys nested."""
    table: dict[str, Any] = {"name": name}
    seen: set[str] = set()
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or not key:
            raise RuleError(f"expected key=value, got {w!r}", where, name)
        outer = key.split(".", 1)[0]
        if key in seen or ("." in key and outer in seen) or ("." not in key and any(
                k.startswith(key + ".") for k in seen)):
            # ``rate=5 rate.pps=1``: one key as a value and as a table (or twice)
            raise RuleError(f"{outer}: given more than once", where, name)
        seen.add(key)
        v: Any
        if key in _WORD_INTS:
            try:
                v = int(value, 0)
            except ValueError:
                raise RuleError(f"{key}: expected an integer, got {value!r}", where,
                                name) from None
        elif key in _WORD_BOOLS:
            if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise RuleError(f"{key}: expected true or false, got {value!r}", where, name)
            v = value.lower() in ("true", "yes", "1")
        elif key in _WORD_LISTS:
            v = [x for x in value.split(",") if x]
        elif key == "proto" and value.isdigit():
            v = int(value)
        else:
            v = value
        if "." in key:
            outer, inner = key.split(".", 1)
            table.setdefault(outer, {})[inner] = v
        else:
            table[key] = v
    return table


def parse_rule_words(name: str, words: list[str], where: str = "command line") -> Rule:
    """A rule from ``key=value`` words (see :func:`rule_words_table`), validated."""
    return parse_rule(rule_words_table(name, words, where), where)


def with_where(rule: Rule, where: str) -> Rule:
    return replace(rule, where=where)
