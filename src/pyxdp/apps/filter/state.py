"""What a filter's control plane must remember across restarts, in one JSON file.

Kernel objects (link, counters, rate buckets) outlive the process through bpffs pins; the
rule set, the counter slot of every rule name, the table sizes and the generation number
live next to them in ``/run/pyxdp-filter/<iface>@netns<inode>/state.json``.  Rules are
stored in the rule-file syntax and re-read with :func:`~pyxdp.apps.filter.rules.parse_rule`,
so a restored rule set went through the same validation as the original.  Writes are
atomic (temporary file + rename): a crash leaves the old or the new state, never half.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pyxdp.apps.filter.prefixes import Prefixes
from pyxdp.apps.filter.rules import (
    MATCH_FIELDS,
    TCP_FLAGS,
    Action,
    Rule,
    RuleError,
    RuleSet,
    parse_rule,
)
from pyxdp.apps.filter.tables import Sizes

VERSION = 1


def rule_to_dict(r: Rule) -> dict[str, Any]:
    """A rule in rule-file form (what :func:`parse_rule` reads back to an equal rule)."""
    d: dict[str, Any] = {"name": r.name, "action": r.action.value}
    for k in ("src", "dst"):
        nets = getattr(r, k)
        if nets:
            d[k] = nets.to_state() if isinstance(nets, Prefixes) else [str(n) for n in nets]
    if r.expr is not None:
        d["expr"] = r.expr
    if r.proto is not None:
        d["proto"] = r.proto
    for k in ("sport", "dport"):
        if getattr(r, k):
            d[k] = [str(p) for p in getattr(r, k)]
    if r.src_mac is not None:
        d["src_mac"] = ":".join(f"{b:02x}" for b in r.src_mac)
    if r.vlan is not None:
        d["vlan"] = r.vlan
    if r.tcp_flags is not None:
        mask, value = r.tcp_flags
        d["tcp_flags"] = ",".join(("" if value & bit else "!") + name
                                  for name, bit in TCP_FLAGS.items() if mask & bit)
    for k in ("fragment", "ip_options", "malformed"):
        if getattr(r, k) is not None:
            d[k] = getattr(r, k)
    if r.length is not None:
        d["length"] = f"{r.length[0]}-{r.length[1]}"
    if r.pattern is not None:
        p = r.pattern
        d["pattern"] = {"base": p.base, "offset": p.offset, "bytes": p.value.hex(),
                        "mask": p.mask.hex()}
    if r.rate is not None:
        rt = r.rate
        d["rate"] = {"pps": rt.pps, "bps": rt.bps, "burst": rt.burst,
                     "per": f"/{rt.prefix4},/{rt.prefix6}"}
    return d


def ruleset_to_dict(rs: RuleSet) -> dict[str, Any]:
    return {"default": rs.default.value, "dry_run": rs.dry_run,
            "rules": [rule_to_dict(r) for r in rs.rules]}


def ruleset_from_dict(d: dict[str, Any], where: str = "state") -> RuleSet:
    rules = [parse_rule(r, f"{where}:rule {i + 1}", i + 1) for i, r in enumerate(d["rules"])]
    return RuleSet(rules, Action(d["default"]), bool(d["dry_run"])).validate()


def normalise_ruleset(rs: Any, where: str = "API") -> RuleSet:
    """``rs`` as it will be saved and re-read: every rule goes through
    :func:`rule_to_dict` and the strict :func:`parse_rule` now, so a hand-built
    :class:`Rule` the rule file would refuse is refused up front (:class:`RuleError`)
    rather than written to a state file that no later :meth:`Filter.open` can read."""
    if not isinstance(rs, RuleSet):
        raise RuleError(f"expected a RuleSet, got {type(rs).__name__}", where)
    if not isinstance(rs.default, Action) or not isinstance(rs.dry_run, bool):
        raise RuleError("RuleSet.default must be an Action and dry_run a bool", where)
    out = []
    for i, r in enumerate(rs.rules):
        if not isinstance(r, Rule):
            raise RuleError(f"rule {i + 1}: expected a Rule, got {type(r).__name__}", where)
        at = r.where or f"{where}:rule {i + 1}"
        name = r.name if isinstance(r.name, str) else ""
        try:
            back = parse_rule(json.loads(json.dumps(rule_to_dict(r))), at, i + 1)
        except RuleError as e:
            raise RuleError(e.reason, at, name) from None
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise RuleError(f"not a valid rule: {e}", at, name) from None
        if back != r:
            diff = [f for f in ("name", "action", *MATCH_FIELDS, "rate")
                    if getattr(back, f) != getattr(r, f)]
            raise RuleError(f"would not survive saving and re-reading ({', '.join(diff)}"
                            " differ): build rules with parse_rule", at, name)
        out.append(replace(back, where=r.where))
    return RuleSet(out, rs.default, rs.dry_run).validate()


@dataclass
class FilterState:
    iface: str
    ifindex: int
    netns: int
    mode: str | None
    sizes: Sizes
    ruleset: RuleSet = field(default_factory=RuleSet)
    slots: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    # a filter running as a stage of a pyxdp chain: {"pin_root", "state_root", "stage",
    # "priority"} of that chain (None: attached on its own link)
    chain: dict[str, Any] | None = None

    def to_json(self, prog_id: int | None = None) -> str:
        """The state as saved; ``prog_id`` names the program it describes (crash
        recovery compares it with the program the link runs)."""
        return json.dumps({"version": VERSION, "iface": self.iface, "ifindex": self.ifindex,
                           "netns": self.netns, "mode": self.mode, "sizes": asdict(self.sizes),
                           "ruleset": ruleset_to_dict(self.ruleset), "slots": self.slots,
                           "generation": self.generation, "prog_id": prog_id,
                           "chain": self.chain})

    @classmethod
    def from_json(cls, text: str, where: str) -> FilterState:
        try:
            return cls.from_dict(json.loads(text), where)
        except ValueError as e:
            if isinstance(e, RuleError):
                raise
            raise RuleError(f"corrupt filter state: {e}", where) from None

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> FilterState:
        try:
            if d.get("version") != VERSION:
                raise RuleError(f"state version {d.get('version')!r}, expected {VERSION}",
                                where)
            return cls(d["iface"], d["ifindex"], d["netns"], d["mode"], Sizes(**d["sizes"]),
                       ruleset_from_dict(d["ruleset"], where), dict(d["slots"]),
                       d["generation"], d.get("chain"))
        except (ValueError, KeyError, TypeError) as e:
            if isinstance(e, RuleError):
                raise
            raise RuleError(f"corrupt filter state: {e}", where) from None


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` atomically; the temporary file never outlives an error (a crash
    may leave one: the next open removes it)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = ["FilterState", "normalise_ruleset", "rule_to_dict", "ruleset_from_dict",
           "ruleset_to_dict", "write_atomic"]
