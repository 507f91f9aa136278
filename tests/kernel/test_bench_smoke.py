"""The benchmarks' kernel code paths run, on tiny sizes, and give complete documents.

No timing is asserted: only that every side was sampled once per round, that the
comparisons the results promise exist, and that each sample is a positive number."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

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


@pytest.mark.skipif(shutil.which("clang") is None, reason="needs clang for the C twins")
def test_compiler_quality_twins_agree_on_verdict_and_output_bytes() -> None:

    from pyxdp.bench import compiler_quality

    examples = Path(__file__).resolve().parents[2] / "examples"
    r = compiler_quality.measure(repeat=5, rounds=5, veth_count=0, examples=examples,
                                 log=lambda _m: None)
    rows = r.extra["rows"]
    assert {row["program"] for row in rows} == set(compiler_quality.PACKETS)
    for row in rows:
        assert row["same_verdict"], row["program"]
        assert row["same_output"], row["program"]
        assert row["insns_ours"] > 0 and row["insns_clang"] > 0
        assert len(r.sides[f"{row['program']} ns ours"]["samples"]) == 5
        assert len(r.sides[f"{row['program']} ns bare"]["samples"]) == 5


def test_compiler_quality_icmp_echo_answers_with_a_correct_checksum() -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    from pyxdp.bench import compiler_quality
    from pyxdp.compiler import compile_module
    from pyxdp.kernel import load_collection

    frame = compiler_quality.PACKETS["icmp_echo"]
    obj = compile_module(str(compiler_quality.program_source("icmp_echo", Path("."))))
    with load_collection(obj.spec) as coll:
        res = coll.programs["icmp_echo"].test_run(frame)
    assert res.retval == 3                                   # XDP_TX
    req, rep = Ether(frame), Ether(bytes(res.data_out))
    assert (rep.src, rep.dst) == (req.dst, req.src)
    assert (rep[IP].src, rep[IP].dst) == (req[IP].dst, req[IP].src)
    assert rep[ICMP].type == 0 and rep[ICMP].load == req[ICMP].load
    sent = rep[ICMP].chksum
    del rep[ICMP].chksum
    assert sent == Ether(bytes(rep))[ICMP].chksum
