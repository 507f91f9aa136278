"""``pyxdp asm``, ``pyxdp disasm`` and ``pyxdp emu`` through ``pyxdp.cli.main``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyxdp.cli import main
from pyxdp.packets.build import ethernet, ipv4, tcp, udp
from pyxdp.packets.pcap import write_pcap

OBJ = Path(__file__).resolve().parents[1] / "data" / "obj"

DNS_DROP = """
    r2 = *(u32 *)(r1 + 0)
    r3 = *(u32 *)(r1 + 4)
    r4 = r2
    r4 += 38
    if r4 > r3 goto pass
    r4 = *(u8 *)(r2 + 23)
    if r4 != 17 goto pass
    r4 = *(u16 *)(r2 + 36)
    if r4 != 0x3500 goto pass
    r0 = 1
    exit
pass:
    r0 = 2
    exit
"""


@pytest.fixture
def prog(tmp_path: Path) -> Path:
    path = tmp_path / "dns.s"
    path.write_text(DNS_DROP)
    return path


def test_asm_prints_hex_and_writes_raw(prog: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["asm", str(prog)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 13 and lines[-1] == "95 00 00 00 00 00 00 00"
    out = tmp_path / "dns.bin"
    assert main(["asm", str(prog), "-o", str(out)]) == 0
    assert out.read_bytes() == bytes.fromhex("".join(lines))
    assert "13 instruction slots" in capsys.readouterr().err


def test_asm_ubpf_syntax_and_disasm_round_trip(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "p.s"
    src.write_text("mov %r0, 7\nadd %r0, 1\nexit\n")
    raw = tmp_path / "p.bin"
    assert main(["asm", str(src), "--syntax", "ubpf", "-o", str(raw)]) == 0
    capsys.readouterr()
    assert main(["disasm", str(raw)]) == 0
    assert capsys.readouterr().out == "r0 = 7\nr0 += 1\nexit\n"
    assert main(["disasm", str(raw), "--syntax", "ubpf"]) == 0
    assert "%r0" in capsys.readouterr().out


def test_disasm_elf_lists_all_or_prints_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["disasm", str(OBJ / "multi.o")]) == 0
    out = capsys.readouterr().out
    assert "; first_pass" in out and "third_tx:\nr0 = 3\nexit" in out
    assert main(["disasm", str(OBJ / "multi.o"), "--section", "second_drop"]) == 0
    assert capsys.readouterr().out == "r0 = 1\nexit\n"


def test_emu_over_pcap_counts_verdicts(prog: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    pcap = tmp_path / "t.pcap"
    write_pcap(pcap, [ethernet(ipv4(udp(b"q", dport=53)))] * 3
               + [ethernet(ipv4(tcp(b"", dport=80)))] * 2)
    assert main(["emu", str(prog), "--pcap", str(pcap), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["packets"] == 5
    assert data["verdicts"] == {"XDP_DROP": 3, "XDP_PASS": 2}
    assert main(["emu", str(prog), "--pcap", str(pcap)]) == 0
    out = capsys.readouterr().out
    assert "XDP_DROP" in out and "60.0 %" in out


def test_emu_generated_traffic_bytecode_and_elf(prog: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "dns.bin"
    assert main(["asm", str(prog), "-o", str(raw)]) == 0
    assert main(["emu", str(raw), "--packets", "60", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["packets"] == 60 and data["verdicts"]["XDP_DROP"] == 10
    assert main(["emu", str(OBJ / "multi.o"), "--section", "third_tx", "--packets", "4",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdicts"] == {"XDP_TX": 4}
    assert main(["emu", str(OBJ / "btf_map.o"), "--packets", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["packets"] == 5


@pytest.mark.parametrize(("argv", "message"), [
    (["asm", "{bad}"], "line 1"),
    (["disasm", "{notelf}"], "not a whole number"),
    (["disasm", "{obj}", "--section", "nope"], "no program or section 'nope'"),
    (["emu", "{obj}", "--section", "nope"], "no program or section 'nope'"),
    (["emu", "{multi}"], "has 3 programs (first_pass, second_drop, third_tx): choose one"),
    (["emu", "{good}", "--pcap", "{badpcap}"], "malformed pcap"),
    (["emu", "{fakeelf}"], "ELF"),
    (["emu", "{missing}"], "No such file"),
])
def test_bad_input_exits_1_with_a_message(tmp_path: Path, prog: Path, argv: list[str],
                                          message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    files = {"bad": tmp_path / "bad.s", "notelf": tmp_path / "x.bin",
             "badpcap": tmp_path / "bad.pcap", "fakeelf": tmp_path / "fake.o",
             "obj": OBJ / "multi.o", "multi": OBJ / "multi.o", "good": prog,
             "missing": tmp_path / "missing.o"}
    files["bad"].write_text("r0 = = 1\nexit\n")
    files["notelf"].write_bytes(b"\x01\x02\x03")
    files["badpcap"].write_bytes(b"not a pcap file at all, sorry")
    files["fakeelf"].write_bytes(b"\x7fELF" + bytes(60))
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pyxdp {argv[0]}: error: ") and message in err


def test_emu_fault_is_reported_with_the_packet(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "fault.s"
    bad.write_text("r2 = *(u32 *)(r1 + 0)\nr0 = *(u8 *)(r2 + 2000)\nexit\n")
    assert main(["emu", str(bad), "--packets", "2"]) == 1
    assert "packet 1: " in capsys.readouterr().err


def test_conformance_plugin_in_process(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import io

    # r0 = *(u8 *)(r1 + 1); exit
    monkeypatch.setattr(sys, "stdin", io.StringIO("71 10 01 00 00 00 00 00 95 00 00 00 00 00 00 00"))
    assert main(["emu", "--conformance-plugin", "aa bb"]) == 0
    assert capsys.readouterr().out == "bb\n"


def test_conformance_plugin_subprocess() -> None:
    program = "71 10 01 00 00 00 00 00 07 00 00 00 01 00 00 00 95 00 00 00 00 00 00 00"
    res = subprocess.run([sys.executable, "-m", "pyxdp", "emu", "--conformance-plugin",
                          "aa bb"], input=program, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "bc\n"
    bad = subprocess.run([sys.executable, "-m", "pyxdp", "emu", "--conformance-plugin"],
                         input="zz", capture_output=True, text=True, timeout=60,
                         check=False)
    assert bad.returncode != 0 and bad.stderr
