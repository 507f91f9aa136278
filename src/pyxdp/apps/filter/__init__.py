"""``pyxdp filter``: DDoS protection at XDP speed (rules, data plane, control plane).

* :mod:`.rules` — the rule model, rule files and address lists, validation;
* :mod:`.prefixes` — :class:`Prefixes`, a rule's packed prefix set (no object per prefix);
* :mod:`.dataplane` — the packet path, in pyxdp's Python dialect;
* :mod:`.tables` — a rule set compiled to map contents and feature flags (pure);
* :mod:`.program` — compiling the data plane and loading one generation of it;
* :mod:`.control` — :class:`Filter`: attach, atomic rule changes, counters, restarts.
"""

from pyxdp.apps.filter.control import (
    PIN_ROOT,
    STATE_ROOT,
    Filter,
    FilterError,
    NoSuchRule,
    StaleGeneration,
)
from pyxdp.apps.filter.prefixes import PrefixError, Prefixes
from pyxdp.apps.filter.rules import (
    Action,
    Pattern,
    PortRange,
    RateLimit,
    Rule,
    RuleError,
    RuleSet,
    load_rules,
    parse_address_list,
    parse_rule,
    parse_rule_words,
    parse_rules_text,
)
from pyxdp.apps.filter.tables import Sizes, TableFullError

__all__ = ["PIN_ROOT", "STATE_ROOT", "Action", "Filter", "FilterError", "NoSuchRule",
           "StaleGeneration",
           "Pattern", "PortRange", "PrefixError", "Prefixes", "RateLimit", "Rule",
           "RuleError", "RuleSet", "Sizes",
           "TableFullError", "load_rules", "parse_address_list", "parse_rule",
           "parse_rule_words", "parse_rules_text"]
