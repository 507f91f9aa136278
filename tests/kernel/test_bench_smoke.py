"""The benchmarks' kernel code paths run, on tiny sizes, and give complete documents.

No timing is asserted: only that every side was sampled once per round, that the
comparisons the results promise exist, and that each sample is a positive number."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest

from pyxdp.bench import emu_speed, filter_speed, harness, map_ops

pytestmark = pytest.mark.kernel


def test_emu_speed_compares_the_emulator_with_test_run() -> None:
    r = emu_speed.measure(rounds=5, runs=200, log=lambda _m: None)
    (c,) = r.comparisons
    assert c.b == "kernel BPF_PROG_TEST_RUN"
    assert len(r.sides["kernel parser"]["samples"]) == 5
    assert all(x > 0 for x in r.sides["emu parser"]["samples"])


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler and libbpf-dev")
def test_map_ops_rounds_of_both_sides(tmp_path) -> None:
    r = map_ops.measure(entries=2000, rounds=5, log=lambda _m: None)
    names = {c.name for c in r.comparisons}
    for kind in map_ops.KINDS:
        for op in map_ops.OPS:
            assert f"{kind} {op}, typed" in names
            assert len(r.sides[f"{kind} {op} C"]["samples"]) == 5
    args = argparse.Namespace(no_write=False, out=str(tmp_path), json=False, note=[])
    harness.finish(r, args)
    doc = json.loads((tmp_path / "map_ops.json").read_text())
    assert len(doc["comparisons"]) == len(r.comparisons)


def test_filter_feature_cost_alternates_two_generations() -> None:
    insns, ns = filter_speed.feature_cost(5)
    assert set(insns) == set(ns) == {"one prefix rule", "every feature"}
    assert insns["every feature"] > insns["one prefix rule"]
    assert all(len(v) == 5 for v in ns.values())
