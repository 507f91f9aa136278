"""Bad input to every command: exit 1 (our error) or 2 (argument error) and exactly one
line on stderr that names the problem, never a traceback or an "internal error".

Each case is run as a user would, ``python -m pyxdp ...`` in a subprocess, so a
RecursionError, MemoryError or an uncaught exception anywhere shows up here.  Argument
errors print argparse's usage lines before their one ``error:`` line; our errors print the
one line only.  Cases marked ``root`` touch the kernel; the ``nocap`` ones run as root
with every capability dropped (``setpriv``), as an unprivileged user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

OBJ = Path(__file__).resolve().parent.parent / "data" / "obj"
HUGE = "9" * 5000
NOCAP = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    junk = bytes((i * 151 + 7) % 256 for i in range(3000))     # not UTF-8, not ELF
    for name in ("junk.bin", "junk.py", "junk.o", "junk.s"):
        (d / name).write_bytes(junk)
    (d / "empty.s").write_text("")
    (d / "dir").mkdir()
    (d / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    (d / "list.toml").write_text("rule = [1, 2]\n")
    (d / "bigint.toml").write_text("[filter]\nx = " + "9" * 5000 + "\n")
    (d / "dotted.toml").write_text(".".join(["a"] * 8000) + " = 1\n")
    (d / "uniport.toml").write_text('[[rule]]\nname = "u"\ndport = "٥٣"\n')
    (d / "offbool.toml").write_text('[[rule]]\nname = "o"\npattern = {offset = true,'
                                     ' bytes = "ab"}\n')
    (d / "scoped.toml").write_text('[[rule]]\nname = "s"\nsrc = "fe80::1%eth0"\n')
    (d / "mapped.toml").write_text('[[rule]]\nname = "m"\nsrc = "::ffff:198.18.0.1"\n')
    (d / "mapped.list").write_text("198.18.0.0/24\n::ffff:198.18.0.1\n")
    (d / "dir.py").mkdir()
    (d / "badproto.toml").write_text('ports = ["lo"]\n[[tunnel]]\nname = "t"\nprotocol = "l2tp"\n'
                                     'local = "198.18.0.1"\nremote = "198.18.0.2"\n')
    (d / "ila48.toml").write_text('ports = ["lo"]\n[[sir]]\nprefix = "2001:db8:1::/48"\n')
    (d / "badvni.toml").write_text('ports = ["lo"]\n[[tunnel]]\nname = "t"\nprotocol = "vxlan"\n'
                                   'vni = 99999999\nlocal = "198.18.0.1"\n'
                                   'remote = "198.18.0.2"\n')
    (d / "lbvip.toml").write_text('ports = ["lo"]\nsource4 = "198.18.10.1"\n[[service]]\n'
                                  'vip = "203.0.113.1"\nport = 80\n')
    (d / "lbring.toml").write_text('ports = ["lo"]\nring_size = 1000\n')
    (d / "lbsaved.toml").write_text('ports = ["lo"]\n[[service]]\nvip = "198.18.100.1"\n'
                                    'port = 80\n')
    return d


# (id, argv, needs root, expected exit code, a phrase the error line must contain)
CASES = [
    # numbers: negative, zero, huge, not a number, not finite, out of range
    ("tg-count-0", ["trafficgen", "lo", "--count", "0"], False, 2, "--count"),
    ("tg-count-neg", ["trafficgen", "lo", "--count", "-5"], False, 2, "at least 1"),
    ("tg-count-huge", ["trafficgen", "lo", "--count", HUGE], False, 2, "not a number"),
    ("tg-count-word", ["trafficgen", "lo", "--count", "many"], False, 2, "not an integer"),
    ("tg-duration-neg", ["trafficgen", "lo", "--duration", "-1"], False, 2, "--duration"),
    ("tg-duration-nan", ["trafficgen", "lo", "--duration", "nan"], False, 2, "finite"),
    ("tg-duration-inf", ["trafficgen", "lo", "--duration", "inf"], False, 2, "finite"),
    ("tg-sport", ["trafficgen", "lo", "--sport", "70000"], False, 2, "0 to 65535"),
    ("tg-size-0", ["trafficgen", "lo", "--size", "0"], False, 2, "--size"),
    ("tg-threads-0", ["trafficgen", "lo", "--threads", "0"], False, 2, "--threads"),
    ("tg-unicode-digits", ["trafficgen", "lo", "--dport", "٥٣"], False, 2, "--dport"),
    ("tg-no-iface", ["trafficgen", "pyxdp-none0", "--count", "1"], True, 1, "pyxdp-none0"),
    ("emu-packets-neg", ["emu", str(OBJ / "global_data.o"), "--packets", "-1"], False, 2,
     "--packets"),
    ("bench-rounds", ["bench", "--rounds", "1"], False, 2, "--rounds"),
    ("bench-count-0", ["bench", "--count", "0"], False, 2, "--count"),
    ("bench-duration-neg", ["bench", "--duration", "-1"], False, 2, "--duration"),
    ("prog-show-0", ["prog", "show", "0"], False, 2, "ids start at 1"),
    ("prog-show-word", ["prog", "show", "abc"], False, 2, "not an id"),
    ("prog-dump-huge", ["prog", "dump", HUGE], False, 2, "not an id"),
    ("prog-show-missing", ["prog", "show", "999999999"], True, 1, "no prog with id"),
    ("map-dump-missing", ["map", "dump", "999999999"], True, 1, "no map with id"),
    ("map-dump-word", ["map", "dump", "nosuchmap"], True, 1, "nosuchmap"),
    ("filter-interval", ["filter", "stats", "lo", "--interval", "-1"], False, 2,
     "--interval"),
    ("filter-port", ["filter", "serve-metrics", "lo", "--port", "70000"], False, 2,
     "--port"),
    ("filter-position", ["filter", "add", "lo", "r1", "src=198.18.0.1", "--position", "-99"],
     False, 2, "--position"),
    ("filter-watch", ["filter", "stats", "lo", "--watch", "-3"], False, 2, "--watch"),
    ("switch-no-iface", ["switch", "attach", "pyxdpnosuch0"], True, 1, "no such interface"),
    ("switch-no-ports", ["switch", "attach"], False, 2, "one or more interfaces"),
    ("switch-age", ["switch", "attach", "lo", "--age", "0"], False, 2, "--age"),
    ("switch-vlan", ["switch", "static", "02:00:00:00:00:01", "p0", "--vlan", "5000"], False,
     2, "--vlan"),
    ("fleet-no-etcd", ["fleet", "status"], False, 2, "--etcd"),
    ("fleet-endpoint", ["fleet", "status", "--etcd", "ftp://x"], False, 1,
     "expected http(s)://HOST:PORT"),
    ("fleet-canary", ["fleet", "push", "x.toml", "--etcd", "http://127.0.0.1:1", "--canary",
                      "2"], False, 2, "--canary"),
    ("agent-host", ["agent", "--host", "bad name!", "--iface", "lo", "--etcd",
                    "http://127.0.0.1:1"], False, 1, "host name"),
    ("router-no-iface", ["router", "attach", "pyxdpnosuch0"], True, 1, "no such interface"),
    ("router-no-ports", ["router", "attach"], False, 2, "one or more interfaces"),
    ("router-config", ["router", "attach", "--config", "{d}/none.toml"], False, 1,
     "cannot read router config"),
    ("router-interval", ["router", "stats", "--interval", "-1"], False, 2, "--interval"),
    ("router-port", ["router", "serve-metrics", "--port", "70000"], False, 2, "--port"),
    ("tunnel-config", ["tunnel", "attach", "lo", "--config", "{d}/none.toml"], False, 1,
     "cannot read tunnel config"),
    ("tunnel-proto", ["tunnel", "attach", "lo", "--config", "{d}/badproto.toml"], False, 1,
     "l2tp"),
    ("tunnel-vni", ["tunnel", "attach", "lo", "--config", "{d}/badvni.toml"], False, 1,
     "vni"),
    ("tunnel-interval", ["tunnel", "stats", "--interval", "-1"], False, 2, "--interval"),
    ("tunnel-port", ["tunnel", "serve-metrics", "--port", "70000"], False, 2, "--port"),
    ("ila-config", ["ila", "attach", "--config", "{d}/none.toml"], False, 1,
     "cannot read ILA config"),
    ("ila-no-config", ["ila", "attach"], False, 2, "--config"),
    ("ila-sir-48", ["ila", "attach", "--config", "{d}/ila48.toml"], False, 1, "/64"),
    ("ila-map-args", ["ila", "map", "add", "::1:0:0:5"], False, 2, "IDENTIFIER LOCATOR"),
    ("ila-interval", ["ila", "stats", "--interval", "-1"], False, 2, "--interval"),
    ("lb-no-config", ["lb", "attach"], False, 2, "IFACE"),
    ("lb-proto-mismatch", ["lb", "service", "add", "198.18.100.1:80/udp", "--proto", "tcp"],
     False, 2, "another protocol"),
    ("lb-config", ["lb", "attach", "--config", "{d}/none.toml"], False, 1, "none.toml"),
    ("lb-vip-range", ["lb", "attach", "--config", "{d}/lbvip.toml"], False, 1,
     "outside the allowed ranges"),
    ("lb-ring", ["lb", "attach", "--config", "{d}/lbring.toml"], False, 1, "prime"),
    ("lb-restore-not-saved", ["lb", "restore", "{d}/lbsaved.toml", "--state-root", "{d}/st"],
     False, 1, "ports"),
    ("lb-weight-missing", ["lb", "real", "weight", "198.18.100.1:80", "198.18.10.11"], False,
     2, "--weight"),
    ("lb-interval", ["lb", "stats", "--interval", "-1"], False, 2, "--interval"),
    ("lb-backend-no-vip", ["lb", "backend", "b0", "--lb-source", "198.18.10.1"], False, 2,
     "--vip"),
    ("lb-backend-no-source", ["lb", "backend", "b0", "--vip", "198.18.100.1"], False, 2,
     "--lb-source"),
    ("lb-port", ["lb", "serve-metrics", "--port", "70000"], False, 2, "--port"),
    # empty values
    ("empty-count", ["trafficgen", "lo", "--count", ""], False, 2, "--count"),
    ("empty-compile", ["compile", ""], False, 2, "no such file"),
    ("empty-asm", ["asm", ""], False, 1, "error"),
    ("empty-rule-name", ["filter", "add", "lo", "", "src=198.19.0.0/16", "--state-root",
                         "{d}/st"], False, 1, "name"),
    ("empty-iface", ["status", ""], True, 1, "interface"),
    ("empty-map", ["map", "dump", ""], True, 1, "map"),
    # files: missing, a directory, binary, empty, source text instead of a file
    ("compile-source-text", ["compile", 'print("x")'], False, 2, "no such file"),
    ("compile-missing", ["compile", "{d}/nope.py"], False, 2, "no such file"),
    ("compile-dir", ["compile", "{d}/dir.py"], False, 2, "is a directory"),
    ("compile-not-py", ["compile", "{d}/junk.s"], False, 2, "not a .py file"),
    ("compile-binary", ["compile", "{d}/junk.py"], False, 2, "not UTF-8"),
    ("asm-missing", ["asm", "{d}/nope.s"], False, 1, "nope.s"),
    ("asm-dir", ["asm", "{d}/dir"], False, 1, "dir"),
    ("asm-binary", ["asm", "{d}/junk.s"], False, 1, "not UTF-8"),
    ("asm-empty", ["asm", "{d}/empty.s"], False, 1, "no instructions"),
    ("disasm-missing", ["disasm", "{d}/nope.o"], False, 1, "nope.o"),
    ("disasm-dir", ["disasm", "{d}/dir"], False, 1, "dir"),
    ("emu-missing", ["emu", "{d}/nope.o"], False, 1, "nope.o"),
    ("emu-dir", ["emu", "{d}/dir"], False, 1, "dir"),
    ("emu-binary", ["emu", "{d}/junk.o"], False, 1, "junk.o"),
    ("load-missing", ["load", "{d}/nope.o"], True, 1, "nope.o"),
    ("load-dir", ["load", "{d}/dir"], True, 1, "dir"),
    ("load-binary", ["load", "{d}/junk.o"], True, 1, "not a valid ELF"),
    ("load-pin-not-bpffs", ["load", str(OBJ / "global_data.o"), "--pin", "{d}/newpins"],
     True, 1, "not on a bpf filesystem"),
    ("attach-missing", ["attach", "lo", "{d}/nope.o"], True, 1, "nope.o"),
    ("attach-binary", ["attach", "lo", "{d}/junk.o"], True, 1, "not a valid ELF"),
    ("attach-no-iface", ["attach", "pyxdp-none0", str(OBJ / "global_data.o")], True, 1,
     "pyxdp-none0"),
    ("attach-bad-mode", ["attach", "lo", str(OBJ / "global_data.o"), "--mode", "fast"],
     False, 2, "--mode"),
    ("detach-no-netns", ["detach", "lo", "--netns", "pyxdp-no-such-ns"], True, 1,
     "pyxdp-no-such-ns"),
    ("status-no-iface", ["status", "pyxdp-none0"], True, 1, "pyxdp-none0"),
    ("chain-priority-neg", ["chain", "move", "lo", "s", "-1"], False, 2, "priority"),
    ("chain-add-missing", ["chain", "add", "lo", "s", "{d}/nope.o"], False, 2, "no such file"),
    ("chain-add-dir", ["chain", "add", "lo", "s", "{d}/dir"], False, 2, "is a directory"),
    ("chain-default", ["chain", "attach", "lo", "--default", "maybe"], False, 2, "--default"),
    ("chain-no-chain", ["chain", "list", "pyxdp-none0", "--state-root", "{d}/st"], True, 1,
     "has no chain"),
    ("dump-snaplen", ["dump", "lo", "-s", "0"], False, 2, "--snaplen"),
    ("dump-count", ["dump", "lo", "-c", "0"], False, 2, "--count"),
    ("dump-expression", ["dump", "lo", "port", "banana"], False, 1, "bad filter expression"),
    ("dump-no-chain", ["dump", "pyxdp-none0", "--state-root", "{d}/st"], True, 1,
     "has no chain"),
    ("top-interval", ["top", "--interval", "0"], False, 2, "--interval"),
    ("top-count", ["top", "--count", "-1"], False, 2, "--count"),
    # rule files: each refused with the reason, before anything is attached
    ("rules-deep", ["filter", "attach", "lo", "--rules", "{d}/deep.toml", "--dry-run"], False,
     1, "nesting"),
    ("rules-not-tables", ["filter", "attach", "lo", "--rules", "{d}/list.toml", "--dry-run"],
     False, 1, "not a [[rule]] table"),
    ("rules-bigint", ["filter", "attach", "lo", "--rules", "{d}/bigint.toml", "--dry-run"],
     False, 1, "TOML value refused"),
    ("rules-dotted", ["filter", "attach", "lo", "--rules", "{d}/dotted.toml", "--dry-run"],
     False, 1, "dotted parts"),
    ("rules-binary", ["filter", "attach", "lo", "--rules", "{d}/junk.bin", "--dry-run"], False,
     1, "not text"),
    ("rules-dir", ["filter", "attach", "lo", "--rules", "{d}/dir", "--dry-run"], False, 1,
     "directory"),
    ("rules-unicode-port", ["filter", "attach", "lo", "--rules", "{d}/uniport.toml",
                            "--dry-run"], False, 1, "expected a port"),
    ("rules-offset-bool", ["filter", "attach", "lo", "--rules", "{d}/offbool.toml",
                           "--dry-run"], False, 1, "offset"),
    ("rules-scoped", ["filter", "attach", "lo", "--rules", "{d}/scoped.toml", "--dry-run"],
     False, 1, "scope"),
    ("rules-mapped", ["filter", "attach", "lo", "--rules", "{d}/mapped.toml", "--dry-run"],
     False, 1, "write 198.18.0.1 instead"),
    ("import-binary", ["filter", "import", "lo", "{d}/junk.bin", "--state-root", "{d}/st"],
     False, 1, "not text"),
    ("import-mapped", ["filter", "import", "lo", "{d}/mapped.list", "--state-root", "{d}/st"],
     False, 1, "IPv4-mapped"),
    ("no-command", ["frobnicate"], False, 2, "frobnicate"),
]

NOCAP_CASES = [
    ("nocap-prog-list", ["prog", "list"], "needs root or CAP_BPF"),
    ("nocap-map-list", ["map", "list"], "needs root or CAP_BPF"),
    ("nocap-features", ["features"], "needs root or CAP_BPF"),
    ("nocap-load", ["load", str(OBJ / "global_data.o")], "needs root or CAP_BPF"),
    ("nocap-trafficgen", ["trafficgen", "lo", "--count", "1"], "needs root or CAP_BPF"),
]


def pyxdp(argv: list[str], prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYXDP_DEBUG"}
    return subprocess.run([*(prefix or []), sys.executable, "-m", "pyxdp", *argv],
                          capture_output=True, text=True, timeout=60, env=env)


def check_one_error_line(r: subprocess.CompletedProcess[str], rc: int, phrase: str) -> None:
    err = r.stderr
    assert "Traceback" not in err and "internal error" not in err, err
    assert r.returncode == rc, (r.returncode, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error:" in ln]
    assert len(errors) == 1, err
    if rc == 1:                          # ours: the one line and nothing else
        assert lines == errors, err
    else:                                # argparse: usage lines, then the error line
        assert lines[-1] == errors[0], err
    assert errors[0].startswith("pyxdp"), err
    assert phrase in errors[0], (phrase, err)


@pytest.mark.parametrize(("argv", "root", "rc", "phrase"),
                         [pytest.param(a, root, rc, ph, id=i,
                                       marks=[pytest.mark.kernel] if root else [])
                          for i, a, root, rc, ph in CASES])
def test_bad_input_gives_one_line(files: Path, argv: list[str], root: bool, rc: int,
                                  phrase: str) -> None:
    argv = [a.replace("{d}", str(files)) for a in argv]
    r = pyxdp(argv)
    check_one_error_line(r, rc, phrase.replace("{d}", str(files)))
    assert not (files / "newpins").exists(), "a refused load --pin left its directory"


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
@pytest.mark.parametrize(("argv", "phrase"), [pytest.param(a, p, id=i)
                                              for i, a, p in NOCAP_CASES])
def test_without_privilege_says_so(argv: list[str], phrase: str) -> None:
    r = pyxdp(argv, prefix=NOCAP)
    check_one_error_line(r, 1, phrase)


def test_every_command_is_covered() -> None:
    """Every command of the CLI has at least one bad-input case here."""
    from pyxdp.cli import COMMANDS

    covered = {argv[0] for _, argv, *_ in CASES} | {argv[0] for _, argv, _ in NOCAP_CASES}
    missing = set(COMMANDS) - covered - {"demo"}      # demo takes no values: only flags
    assert not missing, f"no bad-input case for: {sorted(missing)}"


def test_internal_errors_are_one_line_with_debug_escape(monkeypatch, capsys) -> None:
    """A bug of ours still gives one line (and the traceback under PYXDP_DEBUG=1)."""
    from pyxdp import cli
    from pyxdp.cli import _asm

    def boom(args):
        raise KeyError("x")

    monkeypatch.setattr(_asm, "cmd_asm", boom)
    monkeypatch.delenv("PYXDP_DEBUG", raising=False)
    parser = cli.build_parser(["asm", "f"])
    args = parser.parse_args(["asm", "f"])
    args.func = boom
    monkeypatch.setattr(cli, "build_parser", lambda argv: _Fixed(parser, args))
    assert cli.main(["asm", "f"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: KeyError" in err[0]
    monkeypatch.setenv("PYXDP_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["asm", "f"])


class _Fixed:
    def __init__(self, parser, args) -> None:
        self.parser, self.args = parser, args

    def parse_args(self, argv):
        return self.args

    def error(self, msg):
        self.parser.error(msg)


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_pure_commands_work_without_privilege(files: Path) -> None:
    """asm, disasm, compile and emu need no privileges at all."""
    src = files / "p.s"
    src.write_text("r0 = 2\nexit\n")
    r = pyxdp(["asm", str(src), "-o", str(files / "p.bin")], prefix=NOCAP)
    assert r.returncode == 0, r.stderr
    r = pyxdp(["disasm", str(files / "p.bin")], prefix=NOCAP)
    assert r.returncode == 0 and "r0 = 2" in r.stdout, r.stdout + r.stderr
    r = pyxdp(["emu", str(src), "--packets", "3", "--json"], prefix=NOCAP)
    assert r.returncode == 0 and "XDP_PASS" in r.stdout, r.stdout + r.stderr
    prog = files / "drop.py"
    prog.write_text("from pyxdp.compiler.lang import *\n\n@xdp\ndef d(ctx):\n"
                    "    return XDP_DROP\n")
    r = pyxdp(["compile", str(prog), "-o", str(files / "drop.o")], prefix=NOCAP)
    assert r.returncode == 0, r.stderr


@pytest.mark.kernel
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_demo_without_privilege_runs_in_the_emulator() -> None:
    """uid 0 without capabilities is not "root" for the demo: it runs the emulator (a
    test bed would fail to make namespaces) and says why."""
    r = pyxdp(["demo", "--json"], prefix=NOCAP)
    assert r.returncode == 0, r.stderr
    import json

    doc = json.loads(r.stdout)
    assert doc["mode"] == "emulator"
    assert doc["verdicts"]["DROP"] > 0 and doc["verdicts"]["PASS"] > 0
