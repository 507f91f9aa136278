"""The kernel commands of the ``pyxdp`` CLI, checked against the kernel itself and bpftool.

Every claim the CLI prints (an id, a tag, a size, a value) is looked up again through a
second path: ``Program.info()`` / ``Map.info()`` or ``bpftool -j``.  Pins live in a unique
directory under /sys/fs/bpf that a finalizer removes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxdp.cli import main
from pyxdp.kernel import Map, Program, list_programs
from pyxdp.maps import MapSpec, MapType

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "obj"
BTF_MAP = str(OBJ / "btf_map.o")        # count_packets + counters + pinned_stats (BY_NAME)
MULTI = str(OBJ / "multi.o")            # first_pass, second_drop, third_tx
HAVE_BPFTOOL = shutil.which("bpftool") is not None


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def bpftool(*args: str) -> object:
    if not HAVE_BPFTOOL:
        pytest.skip("bpftool not installed")
    r = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, timeout=60,
                       check=True)
    return json.loads(r.stdout)


@pytest.fixture
def pin_root() -> Iterator[str]:
    """A path under /sys/fs/bpf that does not exist yet (``pyxdp load --pin`` creates it)."""
    path = f"/sys/fs/bpf/pyxdp-cli-{secrets.token_hex(4)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)
    assert not os.path.exists(path)


@pytest.fixture
def xdp_prog() -> Iterator[Program]:
    """A small live program of our own, so the listing tests have a known entry."""
    from pyxdp.asm import assemble
    with Program.load(assemble("r0 = 2\nexit"), name="pyxdp_cli_t") as p:
        yield p


# -- pyxdp load ---------------------------------------------------------------------------------
def test_load_without_pin_prints_and_unloads(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "load", BTF_MAP)
    assert rc == 0
    assert "count_packets" in out and "counters" in out and "pinned_stats" in out
    assert "unloaded when the command exited" in out
    rc, out, _ = run(capsys, "load", BTF_MAP, "--json")
    data = json.loads(out)
    assert data["pinned"] is None
    (prog,) = data["programs"]
    assert prog["name"] == "count_packets" and prog["type"] == "xdp"
    assert len(prog["tag"]) == 16 and prog["xlated_insns"] > 0
    # nothing survives the command: the id is gone from the kernel
    assert prog["id"] not in {p.id for p in list_programs()}


def test_load_pin_json_matches_kernel_and_bpftool(capsys: pytest.CaptureFixture[str],
                                                  pin_root: str) -> None:
    rc, out, _ = run(capsys, "load", BTF_MAP, "--pin", pin_root, "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["pinned"] == pin_root
    bt_progs = {p["id"]: p for p in bpftool("prog", "show")}
    bt_maps = {m["id"]: m for m in bpftool("map", "show")}
    for p in data["programs"]:
        assert p["pinned"] == f"{pin_root}/{p['name']}"       # Collection.pin's rule
        with Program.from_pin(p["pinned"]) as live:
            info = live.info()
        assert (info.id, info.tag, info.xlated_size // 8) == (p["id"], p["tag"],
                                                             p["xlated_insns"])
        assert bt_progs[p["id"]]["tag"] == p["tag"]
        assert bt_progs[p["id"]]["name"] == p["name"]
        assert sorted(bt_progs[p["id"]].get("map_ids", [])) == sorted(p["map_ids"])
    names = {m["name"] for m in data["maps"]}
    assert {"counters", "pinned_stats"} <= names
    for m in data["maps"]:
        with Map.from_pin(m["pinned"]) as live:
            info = live.info()
        assert (info.id, info.key_size, info.value_size, info.max_entries) == (
            m["id"], m["key_size"], m["value_size"], m["max_entries"])
        assert bt_maps[m["id"]]["bytes_key"] == m["key_size"]
        assert bt_maps[m["id"]]["max_entries"] == m["max_entries"]
    # the BY_NAME map went where the loader pins it, and is reused by the next load
    assert os.path.exists(f"{pin_root}/pinned_stats")
    assert sorted(os.listdir(pin_root)) == ["count_packets", "counters", "flows",
                                            "pinned_stats"]


def test_load_pin_table_and_second_load_refused(capsys: pytest.CaptureFixture[str],
                                                pin_root: str) -> None:
    rc, out, _ = run(capsys, "load", MULTI, "--pin", pin_root)
    assert rc == 0
    assert f"pinned under {pin_root}" in out
    assert sorted(os.listdir(pin_root)) == ["first_pass", "second_drop", "third_tx"]
    with Program.from_pin(f"{pin_root}/second_drop") as p:
        assert p.test_run(bytes(64)).retval == 1
    before = sorted(os.listdir(pin_root))
    rc, _, err = run(capsys, "load", MULTI, "--pin", pin_root)
    assert rc == 1
    assert "pyxdp load: error: cannot pin program 'first_pass'" in err
    assert "already exists" in err
    assert sorted(os.listdir(pin_root)) == before     # nothing half-pinned


def test_load_single_program(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "load", MULTI, "--program", "third_tx", "--json")
    assert rc == 0
    assert [p["name"] for p in json.loads(out)["programs"]] == ["third_tx"]
    rc, _, err = run(capsys, "load", MULTI, "--program", "nope")
    assert rc == 1
    assert "has no program or section 'nope'" in err and "first_pass" in err


def test_load_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = run(capsys, "load", str(tmp_path / "missing.o"))
    assert rc == 1
    assert err.startswith("pyxdp load: error: ")
    assert "missing.o" in err and "No such file" in err
    text = tmp_path / "notelf.o"
    text.write_text("hello\n")
    rc, _, err = run(capsys, "load", str(text))
    assert rc == 1
    assert "pyxdp load: error: " in err and "notelf.o" in err and "not a valid ELF" in err
    rc, _, err = run(capsys, "load", BTF_MAP, "--pin", str(tmp_path / "pins"))
    assert rc == 1
    assert "not on a bpf filesystem" in err


def test_failed_load_leaves_no_pin_dir(capsys: pytest.CaptureFixture[str],
                                       pin_root: str) -> None:
    obj = "/usr/lib/x86_64-linux-gnu/bpf/xdpdump_bpf.o"    # fentry on a placeholder "func"
    if not os.path.exists(obj):
        pytest.skip("xdp-tools objects not installed")
    rc, _, err = run(capsys, "load", obj, "--pin", pin_root)
    assert rc == 1
    assert "pyxdp load: error: program 'trace_on_entry'" in err
    assert not os.path.exists(pin_root)


# -- pyxdp prog ---------------------------------------------------------------------------------
def test_prog_list_json_matches_info(capsys: pytest.CaptureFixture[str],
                                     xdp_prog: Program) -> None:
    info = xdp_prog.info()
    rc, out, _ = run(capsys, "prog", "list", "--json")
    assert rc == 0
    listed = {p["id"]: p for p in json.loads(out)}
    mine = listed[info.id]
    assert mine["name"] == info.name == "pyxdp_cli_t"
    assert mine["tag"] == info.tag
    assert mine["type"] == "xdp" and mine["type_id"] == int(info.type)
    assert mine["xlated_size"] == info.xlated_size and mine["xlated_insns"] == 2
    assert mine["load_time_ns"] == info.load_time_ns
    # bpftool sees the same set (ours at least) with the same tags
    bt = {p["id"]: p["tag"] for p in bpftool("prog", "show")}
    assert bt[info.id] == info.tag
    rc, out, _ = run(capsys, "prog", "list")
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.split()[:1] == [str(info.id)])
    assert "pyxdp_cli_t" in line and info.tag in line and "xdp" in line


def test_prog_show(capsys: pytest.CaptureFixture[str], xdp_prog: Program) -> None:
    info = xdp_prog.info()
    rc, out, _ = run(capsys, "prog", "show", str(info.id), "--json")
    assert rc == 0
    d = json.loads(out)
    assert (d["id"], d["name"], d["tag"], d["jited_size"]) == (
        info.id, info.name, info.tag, info.jited_size)
    rc, out, _ = run(capsys, "prog", "show", str(info.id))
    assert rc == 0 and info.tag in out and "pyxdp_cli_t" in out


def _unused_id(listed: set[int]) -> int:
    return max(listed, default=0) + 1_000_000


def test_prog_show_and_dump_missing_id(capsys: pytest.CaptureFixture[str]) -> None:
    missing = _unused_id({p.id for p in list_programs()})
    for cmd in ("show", "dump"):
        rc, out, err = run(capsys, "prog", cmd, str(missing))
        assert rc == 1 and out == ""
        assert err.startswith("pyxdp prog: error: ")
        assert "ENOENT" in err and f"there is no prog with id {missing}" in err
    with pytest.raises(SystemExit) as e:      # argparse: a usage error, exit 2
        main(["prog", "show", "zero"])
    assert e.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("syntax", ["llvm", "ubpf"])
def test_prog_dump_xlated(capsys: pytest.CaptureFixture[str], syntax: str) -> None:
    from pyxdp.asm import assemble
    from pyxdp.elf import load_object
    from pyxdp.kernel import load_collection
    with load_collection(load_object(BTF_MAP)) as coll:
        prog = coll.programs["count_packets"]
        info = prog.info()
        xlated = prog.xlated()
        rc, out, _ = run(capsys, "prog", "dump", str(info.id), "--syntax", syntax)
        rc_j, out_j, _ = run(capsys, "-j", "prog", "dump", str(info.id), "--syntax", syntax)
        bt = bpftool("prog", "dump", "xlated", "id", str(info.id)) if syntax == "llvm" else []
    assert rc == 0
    lines = out.splitlines()
    assert len(lines) == len(xlated)
    slots = [int(ln.split(":", 1)[0]) for ln in lines]
    assert slots[-1] + xlated[-1].slots == info.xlated_size // 8
    # the text is our disassembler's: it assembles back to the xlated instructions
    # (minus the kernel-only bits: helper call immediates are addresses, map ids in imm)
    body = [ln.split(":", 1)[1].split(";" if syntax == "llvm" else "#")[0] for ln in lines]
    again = assemble("\n".join(body), syntax)
    assert [i.opcode for i in again] == [i.opcode for i in xlated]
    assert "map[id:" in out if syntax == "llvm" else "lddw" in out
    if bt:
        assert len(bt) == len(xlated)     # bpftool prints one entry per instruction too
    # --json: the same lines as data, helper calls named as in the text
    assert rc_j == 0
    doc = json.loads(out_j)
    assert [d["slot"] for d in doc] == slots
    assert [d["text"] for d in doc] == [b.strip() for b in body]
    helpers = [d["helper"] for d in doc if d["helper"]]
    assert all(h in out for h in helpers)
    if bt and helpers:         # bpftool names the same helper functions
        assert all(h in json.dumps(bt) for h in helpers)


# -- pyxdp map ----------------------------------------------------------------------------------
@pytest.fixture
def hash_map() -> Iterator[Map]:
    with Map.create(MapSpec("pyxdp_cli_h", MapType.HASH, 4, 8, 16)) as m:
        m[1] = 0x1122334455667788
        m[0x0A000001] = 7
        yield m


def test_map_list_json(capsys: pytest.CaptureFixture[str], hash_map: Map) -> None:
    info = hash_map.info()
    rc, out, _ = run(capsys, "map", "list", "--json")
    assert rc == 0
    mine = {m["id"]: m for m in json.loads(out)}[info.id]
    assert (mine["name"], mine["type"], mine["key_size"], mine["value_size"],
            mine["max_entries"]) == ("pyxdp_cli_h", "hash", 4, 8, 16)
    assert {m["id"] for m in bpftool("map", "show")} >= {info.id}
    rc, out, _ = run(capsys, "map", "list")
    assert rc == 0 and "pyxdp_cli_h" in out


def test_map_dump_by_id_and_pin(capsys: pytest.CaptureFixture[str], hash_map: Map,
                                pin_root: str) -> None:
    rc, out, _ = run(capsys, "map", "dump", str(hash_map.id), "--json")
    assert rc == 0
    d = json.loads(out)
    got = {e["key"]: e["value"] for e in d["entries"]}
    assert got == {"01 00 00 00": "88 77 66 55 44 33 22 11",
                   "01 00 00 0a": "07 00 00 00 00 00 00 00"}
    os.mkdir(pin_root)
    hash_map.pin(f"{pin_root}/h")
    rc, out, _ = run(capsys, "map", "dump", f"{pin_root}/h")
    assert rc == 0
    assert "key: 01 00 00 00  value: 88 77 66 55 44 33 22 11" in out
    assert "Found 2 elements" in out
    # bpftool reads the same bytes
    bt = {tuple(e["key"]): tuple(e["value"]) for e in bpftool("map", "dump", "id",
                                                                str(hash_map.id))}
    assert bt[("0x01", "0x00", "0x00", "0x00")] == ("0x88", "0x77", "0x66", "0x55", "0x44",
                                                    "0x33", "0x22", "0x11")


def test_map_dump_percpu_lists(capsys: pytest.CaptureFixture[str]) -> None:
    with Map.create(MapSpec("pyxdp_cli_pc", MapType.PERCPU_ARRAY, 4, 4, 2)) as m:
        values = list(range(10, 10 + m.ncpus))
        m[1] = values
        rc, out, _ = run(capsys, "map", "dump", str(m.id), "--json")
    assert rc == 0
    entries = {e["key"]: e["value"] for e in json.loads(out)["entries"]}
    assert entries["01 00 00 00"] == [v.to_bytes(4, "little").hex(" ") for v in values]
    assert entries["00 00 00 00"] == ["00 00 00 00"] * len(values)


def test_map_dump_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                         xdp_prog: Program, pin_root: str) -> None:
    rc, _, err = run(capsys, "map", "dump", str(tmp_path / "nothing"))
    assert rc == 1 and "no such map id or pinned path" in err
    rc, _, err = run(capsys, "map", "dump", "4000000000")
    assert rc == 1 and "ENOENT" in err and "there is no map with id 4000000000" in err
    os.mkdir(pin_root)
    xdp_prog.pin(f"{pin_root}/p")
    rc, _, err = run(capsys, "map", "dump", f"{pin_root}/p")
    # the library's one check of what a pin holds (kernel/_map.py), not a copy of it
    assert rc == 1 and err.strip().endswith(f"{pin_root}/p is a BPF program, not a BPF map")
    plain = tmp_path / "plain"
    plain.write_text("x")
    rc, _, err = run(capsys, "map", "dump", str(plain))
    assert rc == 1 and "is not a BPF pin" in err


# -- pyxdp features -----------------------------------------------------------------------------
def test_features_agree_with_bpftool(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "features", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["kernel"] == os.uname().release
    assert d["prog_types"]["XDP"] is True and d["map_types"]["HASH"] is True
    assert {"map_lookup_elem", "redirect", "xdp_adjust_head"} <= set(d["helpers"]["XDP"])
    bt = bpftool("feature", "probe", "kernel")
    for section, key in (("prog_types", "have_{}_prog_type"), ("map_types",
                                                                "have_{}_map_type")):
        theirs = bt["program_types" if section == "prog_types" else "map_types"]
        compared = 0
        for name, ok in d[section].items():
            k = key.format(name.lower())
            if k in theirs:
                assert ok == theirs[k], f"{section} {name}: pyxdp {ok}, bpftool {theirs[k]}"
                compared += 1
        assert compared >= 25
    rc, out, _ = run(capsys, "features")
    assert rc == 0 and "xdp" in out and "redirect_map" in out


# -- a real process -----------------------------------------------------------------------------
def test_python_dash_m_subprocess(pin_root: str) -> None:
    r = subprocess.run([sys.executable, "-m", "pyxdp", "load", BTF_MAP, "--pin", pin_root,
                        "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (prog,) = json.loads(r.stdout)["programs"]
    # the process is gone, the pinned program is not
    with Program.from_pin(f"{pin_root}/count_packets") as p:
        assert p.id == prog["id"]
    r = subprocess.run([sys.executable, "-m", "pyxdp", "prog", "show", str(prog["id"])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and prog["tag"] in r.stdout
    r = subprocess.run([sys.executable, "-m", "pyxdp", "load", "/nonexistent/x.o"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == ("pyxdp load: error: cannot read /nonexistent/x.o:"
                                " No such file or directory")
