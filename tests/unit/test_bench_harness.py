"""The benchmark harness: statistics, verdicts, round order and the results documents.

Pure: no kernel, no clocks asserted (samples are made up here)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyxdp.bench import harness
from pyxdp.bench.harness import HIGHER, LOWER, Report, alternate, compare, summarize


def test_summarize_median_range_and_quartiles() -> None:
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (s.median, s.min, s.max) == (3.0, 1.0, 5.0)
    assert (s.q1, s.q3, s.iqr) == (2.0, 4.0, 2.0)
    assert s.samples == (5.0, 1.0, 4.0, 2.0, 3.0)   # kept in round order
    assert s.n == 5


def test_summarize_even_count_and_single_sample() -> None:
    assert summarize([1, 2, 3, 4]).median == 2.5
    one = summarize([7])
    assert (one.median, one.min, one.max, one.iqr) == (7.0, 7.0, 7.0, 0.0)


def test_summarize_refuses_no_samples_and_nan() -> None:
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError):
        summarize([1.0, math.nan])


@given(st.lists(st.floats(min_value=-1e9, max_value=1e9), min_size=1, max_size=30))
def test_summary_is_ordered(xs: list[float]) -> None:
    s = summarize(xs)
    assert s.min <= s.q1 <= s.median <= s.q3 <= s.max
    assert s.iqr >= 0


def test_overlapping_samples_are_within_the_spread() -> None:
    # the case: one sample each would have said 0.84x; five each overlap
    c = compare("same drop object", "pyxdp", [4.58, 5.6, 5.1, 5.3, 4.9],
                "xdp-loader", [5.43, 5.0, 5.2, 4.8, 5.5], "Mpps")
    assert c.within_spread
    assert c.winner is None
    assert c.factor == 1.0
    assert c.short() == "within the spread"
    v = c.verdict()
    assert "within the spread" in v and "no finding" in v
    assert "pyxdp" in v and "xdp-loader" in v


def test_separated_samples_name_the_faster_side_higher_is_better() -> None:
    c = compare("rate", "A", [10, 11, 10.5, 10.8, 10.2], "B", [5, 5.5, 5.2, 5.1, 5.4],
                "Mpps", HIGHER)
    assert not c.within_spread
    assert c.winner == "A"
    assert c.factor == pytest.approx(10.5 / 5.2)
    assert c.ratio == pytest.approx(10.5 / 5.2)
    lo, hi = c.ratio_range
    assert lo == pytest.approx(10 / 5.5) and hi == pytest.approx(11 / 5)
    assert lo <= c.ratio <= hi
    v = c.verdict()
    assert "A is 2.02x faster" in v and "do not overlap" in v
    assert "within the spread" not in v


def test_lower_is_better_picks_the_smaller_side() -> None:
    c = compare("load time", "pyxdp", [3.1, 3.2, 3.0, 3.3, 3.15], "bpftool",
                [2.0, 2.1, 2.2, 2.05, 2.15], "ms", LOWER)
    assert c.winner == "bpftool"
    assert c.factor == pytest.approx(3.15 / 2.1)
    assert c.ratio > 1           # A/B of the medians, whichever way is better
    assert c.short() == "bpftool 1.50x faster"


def test_small_differences_are_said_in_percent() -> None:
    c = compare("x", "A", [103, 103.5, 104], "B", [100, 100.5, 101], "ns", LOWER)
    assert c.winner == "B"
    assert c.short().startswith("B 3.")
    assert "%" in c.short()


def test_an_outlier_round_keeps_it_within_the_spread_but_the_iqr_gap_is_said() -> None:
    # TC had one slow round; the middle halves are far apart, the full ranges touch
    c = compare("PASS vs TC", "PASS", [0.81, 0.75, 0.85, 0.80, 0.82],
                "TC", [1.30, 0.80, 1.34, 1.32, 1.29], "Mpps")
    assert c.within_spread and c.winner is None
    assert c.iqr_separated
    assert c.short() == "within the spread (IQRs apart)"
    v = c.verdict()
    assert "within the spread" in v and "interquartile" in v and "TC looks" in v
    assert "no finding" not in v
    plain = compare("x", "A", [1, 2, 3, 4, 5], "B", [2, 3, 4, 5, 6])
    assert not plain.iqr_separated and "no finding" in plain.verdict()


def test_touching_ranges_count_as_within_the_spread() -> None:
    c = compare("x", "A", [1, 2, 3], "B", [3, 4, 5])
    assert c.within_spread


def test_identical_deterministic_values_are_within_the_spread() -> None:
    c = compare("insns", "ours", [46] * 5, "clang", [46] * 5, "insns", LOWER, word="smaller")
    assert c.within_spread and c.ratio == 1.0


def test_deterministic_but_different_values_have_a_winner() -> None:
    c = compare("insns", "ours", [22] * 5, "clang", [50] * 5, "insns", LOWER, word="smaller")
    assert c.winner == "ours" and "smaller" in c.short()


def test_compare_refuses_an_unknown_direction() -> None:
    with pytest.raises(ValueError):
        compare("x", "A", [1], "B", [2], better="sideways")


@given(st.lists(st.floats(min_value=0.1, max_value=1e6), min_size=1, max_size=12),
       st.lists(st.floats(min_value=0.1, max_value=1e6), min_size=1, max_size=12))
def test_verdict_agrees_with_the_ranges(a: list[float], b: list[float]) -> None:
    c = compare("p", "A", a, "B", b)
    separated = max(a) < min(b) or max(b) < min(a)
    assert c.within_spread == (not separated)
    assert (c.winner is None) == (not separated)
    if separated:
        assert c.winner == ("A" if min(a) > max(b) else "B")
        assert c.factor >= 1
    lo, hi = c.ratio_range
    assert lo <= c.ratio * (1 + 1e-12) and c.ratio <= hi * (1 + 1e-12)


def test_round_orders_alternate() -> None:
    assert harness.round_orders(["A", "B"], 4) == [["A", "B"], ["B", "A"], ["A", "B"],
                                                   ["B", "A"]]
    assert harness.round_orders(["A", "B", "C"], 2) == [["A", "B", "C"], ["C", "B", "A"]]


def test_alternate_calls_sides_in_abba_order_and_drops_warmup() -> None:
    calls: list[str] = []

    def side(name: str, value: float):
        def f() -> float:
            calls.append(name)
            return value + len(calls)
        return f

    got = alternate({"A": side("A", 0), "B": side("B", 100)}, rounds=5, warmup=1)
    assert calls == ["A", "B", "A", "B", "B", "A", "A", "B", "B", "A", "A", "B"]
    assert len(got["A"]) == len(got["B"]) == 5
    # samples are in round order: A ran 3rd, 6th, 7th, 10th, 11th
    assert got["A"] == [3.0, 6.0, 7.0, 10.0, 11.0]
    with pytest.raises(ValueError):
        alternate({"A": side("A", 0)}, rounds=0)


def test_alternate_metrics_collects_every_metric_per_side() -> None:
    calls: list[str] = []

    def side(name: str):
        def f() -> dict[str, float]:
            calls.append(name)
            return {"update": len(calls), "lookup": -len(calls)}
        return f

    got = harness.alternate_metrics({"py": side("py"), "c": side("c")}, rounds=5, warmup=1)
    assert calls == ["py", "c", "py", "c", "c", "py", "py", "c", "c", "py", "py", "c"]
    assert got["py"]["update"] == [3.0, 6.0, 7.0, 10.0, 11.0]
    assert got["c"]["lookup"] == [-4.0, -5.0, -8.0, -9.0, -12.0]


def test_report_documents(tmp_path) -> None:
    r = Report("demo", "Demo: A vs B", intro="Made-up samples.", rounds=5,
               params={"frames": 10})
    r.side("a", [1, 2, 3, 4, 5], "ms", LOWER)
    r.side("b", [10, 11, 12, 13, 14], "ms", LOWER)
    c = r.compare("time", "a", "b", a_label="pyxdp", b_label="ref")
    r.table("Fixed figures", ["what", "value"], [["insns", 46]])
    r.notes.append("a note")
    paths = r.write(tmp_path)
    assert [p.name for p in paths] == ["demo.json", "demo.md"]
    doc = json.loads(paths[0].read_text())
    assert doc["benchmark"] == "demo" and doc["rounds"] == 5
    assert {"kernel", "cpu_model", "nproc", "python", "date"} <= set(doc["machine"])
    assert doc["sides"]["a"]["samples"] == [1, 2, 3, 4, 5]
    assert doc["sides"]["b"]["median"] == 12
    (cd,) = doc["comparisons"]
    assert cd["winner"] == "pyxdp" and cd["within_spread"] is False
    assert cd["verdict"] == c.verdict()
    assert doc["tables"][0]["rows"] == [["insns", 46]]
    md = paths[1].read_text()
    assert "# Demo: A vs B" in md and c.verdict() in md and "a note" in md
    assert "| insns | 46 |" in md


def test_finish_json_prints_only_the_document(tmp_path, capsys) -> None:
    r = Report("demo", "Demo")
    r.side("a", [1, 2, 3, 4, 5], "Mpps")
    args = argparse.Namespace(no_write=False, out=str(tmp_path), json=True,
                              note=["busy machine"])
    assert harness.finish(r, args) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["benchmark"] == "demo"
    assert doc["notes"] == ["busy machine"] and doc["seconds"] >= 0
    assert "busy machine" in (tmp_path / "demo.md").read_text()
    assert "wrote" in out.err
    assert (tmp_path / "demo.json").exists()


def test_rounds_below_five_are_refused() -> None:
    ap = argparse.ArgumentParser()
    harness.add_arguments(ap)
    args = ap.parse_args(["--rounds", "3"])
    with pytest.raises(SystemExit):
        harness.check_rounds(ap, args)
    harness.check_rounds(ap, ap.parse_args([]))
