"""The main job without root: the demo's filter, compiled the same way, in the emulator."""

from __future__ import annotations

from pyxdp.apps import demo


def test_emulator_demo_blocks_the_prefix_and_rate_limits_the_syn_flood() -> None:
    out = demo.run_emulator_demo(n=4000, log=lambda _: None)
    verdicts, rules = out["verdicts"], out["rules"]
    assert sum(verdicts.values()) == 4000
    assert rules["blocked-prefix"] == 2000                  # every packet from the prefix
    # 1600 spoofed SYNs in 4 ms of simulated time: the 500-packet burst passes, then the
    # 500 pps budget adds about 2 packets; the rest is dropped
    assert 1600 - 510 <= rules["syn-flood"] <= 1600 - 490
    assert verdicts["PASS"] == 4000 - 2000 - rules["syn-flood"]


def test_demo_rules_parse_and_name_the_rules() -> None:
    rs = demo.demo_rules()
    assert [r.name for r in rs.rules] == ["blocked-prefix", "syn-flood"]
    assert rs.rules[1].rate.pps == 500 and rs.rules[1].rate.prefix4 == 17
