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


def test_emulator_lb_demo_spreads_drains_and_keeps_established_flows() -> None:
    from pyxdp.apps.lb import demo as lbdemo

    out = lbdemo.run_emulator_demo(n=1500, log=lambda _: None)
    first, again, fresh = (out["first"], out["established_after_drain"],
                           out["new_after_drain"])
    assert sum(first.values()) == 1500 and set(first) == {"b1", "b2", "b3"}
    assert all(400 <= v <= 600 for v in first.values()), first      # ~1/3 each
    assert again == first                       # established flows stay, b2's included
    assert "b2" not in fresh and sum(fresh.values()) == 1500
