"""``pyxdp load --type TYPE``: the program type forced, as ``bpftool prog loadall ... type
TYPE`` forces it, checked against the kernel and bpftool (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from libbpf_ref import bpftool_loadall
from test_cli_kernel import pin_root, run  # noqa: F401  (pin_root is a fixture)

from pyxdp.kernel import Program

pytestmark = pytest.mark.kernel

OBJ = Path(__file__).parent.parent / "data" / "obj"
LEGACY = str(OBJ / "legacy_section.o")     # SEC("xdp_prog"): no table knows it
XDP_DROP = 1


def test_load_type_forces_the_program_type(capsys: pytest.CaptureFixture[str],
                                           pin_root: str, pin_dir: str) -> None:  # noqa: F811
    rc, _, err = run(capsys, "load", LEGACY)
    assert rc == 1
    assert "program 'legacy_section': failed to guess program type from ELF section" \
        " 'xdp_prog'" in err
    assert "--type xdp" in err                       # the way out is named
    rc, out, _ = run(capsys, "load", LEGACY, "--type", "xdp", "--pin", pin_root, "--json")
    assert rc == 0, out
    (prog,) = json.loads(out)["programs"]
    assert (prog["name"], prog["type"]) == ("legacy_section", "xdp")
    with Program.from_pin(prog["pinned"]) as live:
        info = live.info()
        assert (info.id, info.tag) == (prog["id"], prog["tag"])
        assert live.test_run(bytes(64)).retval == XDP_DROP
    ref = bpftool_loadall(LEGACY, pin_dir, prog_type="xdp")
    assert ref.ok, ref.stderr
    assert ref.tags == {"legacy_section": prog["tag"]}


def test_load_type_other_types_and_refusals(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "load", str(OBJ / "multi.o"), "--type", "tc", "--json")
    assert rc == 0
    progs = json.loads(out)["programs"]
    assert {p["type"] for p in progs} == {"sched_cls"} and len(progs) == 3
    rc, out, _ = run(capsys, "load", str(OBJ / "multi.o"), "--json")   # as the sections say
    assert {p["type"] for p in json.loads(out)["programs"]} == {"xdp"}
    with pytest.raises(SystemExit) as ei:
        run(capsys, "load", LEGACY, "--type", "nosuch")
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "unknown program type 'nosuch'" in err and "cgroup_skb/ingress" in err
    # fentry/iter sections forced to xdp are plain XDP programs (libbpf 1.2+'s rule)
    rc, out, err = run(capsys, "load", str(OBJ / "btf_attach.o"), "--type", "xdp", "--json")
    assert rc == 0, err
    progs = json.loads(out)["programs"]
    assert {p["type"] for p in progs} == {"xdp"} and len(progs) == 4
