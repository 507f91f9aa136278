"""The ``pyxdp`` command table: what a command imports, that the table and the groups
agree, and the ``--json`` convention (bpftool's ``-j``) across every command.

Imports are checked in a fresh interpreter (``python -c``): behaviour, not timing (the
timing is bench/cli_start.py's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyxdp.cli import COMMANDS, build_parser, main, register_group

OBJ = Path(__file__).resolve().parents[1] / "data" / "obj"
ROOT = Path(__file__).resolve().parents[2]
# what the fast commands must not load: the compiler, the apps, the terminal UI library,
# netlink libraries, and the object-loading stack
HEAVY = ("llvmlite", "pyxdp.compiler", "pyxdp.apps", "rich", "pyroute2", "scapy",
         "elftools", "pyxdp.elf", "pyxdp.btf", "pyxdp.kernel.loader", "pyxdp.emu",
         "pyxdp.trafficgen", "pyxdp.testbed")

PROBE = """
import contextlib, io, json, sys
from pyxdp.cli import build_parser
argv = sys.argv[1:]
parser = build_parser(argv)
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY_TOP
               or any(m == h or m.startswith(h + ".") for h in HEAVY))
print(json.dumps({"heavy": heavy, "out": out.getvalue()}))
"""


def _probe(*argv: str) -> dict[str, object]:
    code = (f"HEAVY = {HEAVY!r}\nHEAVY_TOP = {tuple(h for h in HEAVY if '.' not in h)!r}\n"
            + PROBE)
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("argv", [["--help"], ["prog", "list"], ["status"],
                                  ["map", "dump", "7"], ["prog", "show", "7", "--json"],
                                  ["map", "list"], ["prog", "--help"]])
def test_fast_commands_import_nothing_heavy(argv: list[str]) -> None:
    got = _probe(*argv)
    assert got["heavy"] == [], f"pyxdp {' '.join(argv)} imported {got['heavy']}"


def test_help_lists_every_command_from_the_table_alone() -> None:
    got = _probe("--help")
    out = str(got["out"])
    for name, cmd in COMMANDS.items():
        assert name in out and cmd.help.split()[0] in out


def test_a_commands_help_loads_its_group_only() -> None:
    got = _probe("load", "--help")
    assert "--pin DIR" in str(got["out"])
    assert got["heavy"] == []       # the loader is imported when load runs, not for --help


def test_the_table_and_the_groups_agree() -> None:
    """Every group registers exactly the commands COMMANDS lists for it (a command the
    table lacks could never be run; one the group lacks would be a dead help line)."""
    for module in sorted({c.module for c in COMMANDS.values()}):
        sub = argparse.ArgumentParser().add_subparsers()
        added = register_group(sub, module)
        assert sorted(added) == sorted(n for n, c in COMMANDS.items() if c.module == module)
        for name in added:     # the one-line help comes from the table
            action = next(a for a in sub._choices_actions if a.dest == name)
            assert action.help == COMMANDS[name].help


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    out = []
    for name, p in subs[0].choices.items():
        out += _leaves(p, (*path, name))
    return out


# commands whose output is not data: the benchmark writes result files
NO_JSON = {("bench",)}


def test_every_command_that_prints_data_takes_json() -> None:
    leaves = _leaves(build_parser(full=True))
    assert len(leaves) >= 25
    missing = [" ".join(path) for path, p in leaves
               if path not in NO_JSON and not any("--json" in a.option_strings
                                                  and "-j" in a.option_strings
                                                  for a in p._actions)]
    assert missing == []


def test_product_text_has_no_internal_words() -> None:
    texts = [c.help for c in COMMANDS.values()]
    for _, p in _leaves(build_parser(full=True)):
        texts += [p.description or ""] + [a.help or "" for a in p._actions]
    for word in ("seed", "main job"):
        assert not [t for t in texts if word in t.lower()], word


# -- the JSON convention, on commands that need no kernel --------------------------------------
@pytest.fixture
def prog(tmp_path: Path) -> Path:
    path = tmp_path / "p.s"
    path.write_text("r0 = 2\nexit\n")
    return path


def test_json_first_or_last_is_the_same_document(prog: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asm", str(prog), "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert main(["-j", "asm", str(prog)]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before == after
    assert after == {"slots": 2, "bytes": 16, "output": None,
                     "instructions": ["b7 00 00 00 02 00 00 00", "95 00 00 00 00 00 00 00"]}


def test_asm_json_with_output(prog: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.bin"
    assert main(["asm", str(prog), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["output"] == str(out) and captured.err == ""
    assert out.read_bytes().hex(" ").startswith("b7 00 00 00 02")


def test_disasm_json_raw_and_elf(prog: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "p.bin"
    assert main(["asm", str(prog), "-o", str(raw)]) == 0
    capsys.readouterr()
    assert main(["disasm", str(raw), "--json"]) == 0
    (p,) = json.loads(capsys.readouterr().out)["programs"]
    assert p["name"] is None and p["text"] == ["r0 = 2", "exit"]
    assert main(["disasm", str(OBJ / "multi.o"), "-j"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in d["programs"]] == ["first_pass", "second_drop", "third_tx"]
    assert d["programs"][1]["text"] == ["r0 = 1", "exit"]
    assert main(["disasm", str(OBJ / "multi.o"), "--section", "third_tx", "-j"]) == 0
    (p,) = json.loads(capsys.readouterr().out)["programs"]
    assert p["type"] == "xdp" and p["instructions"] == 2


def test_emu_json_rejected_with_the_plugin_protocol(capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    assert main(["emu", "--conformance-plugin", "--json"]) == 2
    assert "--json does not go with --conformance-plugin" in capsys.readouterr().err
    assert main(["emu"]) == 2
    assert "PROG is required" in capsys.readouterr().err


def test_compile_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llvmlite")
    out = tmp_path / "drop.o"
    assert main(["compile", str(ROOT / "examples" / "drop_all.py"), "-o", str(out),
                 "--dump-after", "asm", "--json"]) == 0
    captured = capsys.readouterr()
    d = json.loads(captured.out)
    assert d["output"] == str(out) and out.read_bytes()[:4] == b"\x7fELF"
    assert d["programs"] and all(p["instructions"] > 0 for p in d["programs"])
    assert "exit" in d["dumps"]["asm"]
    assert captured.err == ""           # the summary line is the document's, not stderr's
    assert main(["compile", str(ROOT / "examples" / "drop_all.py"), "--section",
                 "nope"]) == 1
    assert "no program in section 'nope'" in capsys.readouterr().err


def test_demo_json_in_the_emulator(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llvmlite")
    from pyxdp.apps import demo

    real = demo.run_emulator_demo
    monkeypatch.setattr(demo, "run_emulator_demo", lambda log: real(n=2000, log=log))
    assert main(["demo", "--emulator", "--json"]) == 0
    captured = capsys.readouterr()
    d = json.loads(captured.out)
    assert d["mode"] == "emulator" and sum(d["verdicts"].values()) == 2000
    assert captured.err                 # the progress lines went to stderr
