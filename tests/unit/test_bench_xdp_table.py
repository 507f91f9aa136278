"""`pyxdp bench` without a kernel: its command line, and the report built from made-up
samples (every row kept, each compared with TC drop, references side by side)."""

from __future__ import annotations

import json
import subprocess
import sys

from pyxdp.bench import xdp_table
from pyxdp.bench.xdp_table import GEN_ALONE, ROWS, TC, Send, XdpTable


def _help() -> str:
    """What a user sees: ``pyxdp bench --help`` and ``pyxdp --help`` (the CLI builds a
    group's parser only when that command is asked for)."""
    out = []
    for argv in (["bench", "--help"], ["--help"]):
        run = subprocess.run([sys.executable, "-m", "pyxdp", *argv], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        out.append(run.stdout)
    return "".join(out)


def test_bench_help_speaks_user_words() -> None:
    text = _help()
    assert "seed" not in text.lower()
    assert "TC vs XDP drop/TX rates on a veth test bed" in " ".join(text.split())
    for opt in ("--json", "--rounds", "--count", "--duration", "--no-refs", "--out"):
        assert opt in text


def test_bench_options_import_nothing_heavy() -> None:
    code = ("import sys, pyxdp.bench.options; print(','.join(sorted(m for m in sys.modules"
            " if m.startswith(('pyxdp.kernel', 'pyxdp.testbed', 'pyxdp.bench.xdp_table')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def _report():
    t = XdpTable(count=1000, rounds=5, log=lambda _msg: None)
    rows = {GEN_ALONE: [10.0, 10.2, 9.9, 10.1, 10.0]}
    base = {TC: 2.0, "netfilter drop": 2.05, "XDP generic drop": 2.6, "XDP native drop": 6.0,
            "XDP native TX": 4.7, "XDP_PASS to stack": 1.5}
    for name, v in base.items():
        rows[name] = [v * f for f in (1.0, 1.02, 0.98, 1.01, 0.99)]
    for name, samples in rows.items():
        t.sends[name] = [Send(int(s * 1e6), 1.0, s * 1e6) for s in samples]
    refs = {"pyxdp generator x1": [7.2, 7.3, 7.1, 7.25, 7.3],
            "C generator x1": [7.2, 7.1, 7.3, 7.15, 7.2],
            "pyxdp generator x1, varied": [6.3] * 5,
            "pyxdp-loaded": [4.58, 5.6, 5.1, 5.3, 4.9], "xdp-loader": [5.43, 5.0, 5.2, 4.8, 5.5]}
    return t.report(rows, refs, "")


def test_report_keeps_every_row_and_compares_with_tc() -> None:
    r = _report()
    names = {c.name: c for c in r.comparisons}
    for row in ROWS:
        assert row in r.sides
        if row != TC:
            assert f"{row} vs TC drop" in names
    assert names["XDP native drop vs TC drop"].winner == "XDP native drop"
    assert names["netfilter drop vs TC drop"].within_spread       # 2.05 vs 2.0, overlapping
    loader = next(c for c in r.comparisons if c.name.startswith("XDP native drop, same"))
    assert loader.within_spread
    assert "generator, 1 thread(s), delivered" in names
    (rows_table, varied) = r.tables
    assert [row[0] for row in rows_table.rows] == ROWS
    assert "mlx5" in r.markdown() and "seed" not in r.markdown().lower()
    assert varied.rows[0][1].startswith("6.30")


def test_report_json_has_every_sample_and_the_machine() -> None:
    doc = json.loads(_report().json())
    assert doc["benchmark"] == xdp_table.NAME == "xdp_table"
    assert doc["rounds"] == 5
    assert len(doc["sides"][TC]["samples"]) == 5
    assert {"kernel", "cpu_model", "nproc", "python", "date"} <= set(doc["machine"])
    assert set(doc["extra"]["sink_ns_per_packet"]) == set(ROWS)
    assert all("verdict" in c for c in doc["comparisons"])
