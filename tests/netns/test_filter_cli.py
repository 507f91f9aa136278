"""`pyxdp filter ...` as an operator types it, and the Prometheus exporter, on a real bed."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

pytestmark = [pytest.mark.netns, pytest.mark.kernel]

RULES = """
[filter]
default = "allow"

[[rule]]
name = "bad-net"
src = ["198.19.0.0/17", "2001:db8:bad::/48"]

[[rule]]
name = "web-syn"
proto = "tcp"
dport = 8080
tcp_flags = "syn,!ack"
"""


@pytest.fixture
def env(tmp_path):
    with Testbed() as tb:
        for ns in ("gen", "sink"):
            tb.namespace(ns)
            tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.4.1/24", "198.18.4.2/24"))
        pin_root = f"/sys/fs/bpf/pyxdpc-{secrets.token_hex(4)}"
        roots = ["--netns", tb.ns_name("sink"), "--pin-root", pin_root,
                 "--state-root", str(tmp_path / "state")]
        rules = tmp_path / "rules.toml"
        rules.write_text(RULES)
        try:
            yield tb, roots, tmp_path
        finally:
            subprocess.run([sys.executable, "-m", "pyxdp", "filter", "detach", "veth1", *roots],
                           capture_output=True, timeout=60)
            shutil.rmtree(pin_root, ignore_errors=True)


def pyxdp(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "pyxdp", *argv], capture_output=True, text=True,
                       timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def flood(tb: Testbed, src: str, count: int, proto: str = "udp", dport: int = 9) -> None:
    gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
    frame = template(proto, src=src, dst=sink.ip4, smac=gen.mac, dmac=sink.mac, dport=dport)

    def go() -> None:
        with Generator(gen.ifindex, frame) as g:
            g.run(count, duration=10)

    tb.call("gen", go)
    time.sleep(0.05)


def test_operator_workflow_counts_and_exports(env) -> None:
    tb, roots, tmp = env
    pyxdp("filter", "attach", "veth1", "--rules", str(tmp / "rules.toml"), "--mode", "native",
          *roots)
    flood(tb, "198.19.1.1", 20_000)                       # bad-net
    flood(tb, "198.18.4.77", 5_000, "tcp-syn", 8080)      # web-syn
    flood(tb, "198.18.4.78", 3_000)                        # default: allowed
    stats = json.loads(pyxdp("filter", "stats", "veth1", "--json", *roots).stdout)["stats"]
    assert stats["bad-net"]["packets"] == 20_000
    assert stats["web-syn"]["packets"] == 5_000
    assert stats["@default"]["packets"] >= 3_000
    assert stats["@dropped"]["packets"] == 25_000

    # a rule added from the command line takes effect; counters of the others survive
    pyxdp("filter", "add", "veth1", "noisy", "src=198.18.4.78/32", "proto=udp", *roots)
    flood(tb, "198.18.4.78", 4_000)
    listing = json.loads(pyxdp("filter", "list", "veth1", "--json", *roots).stdout)
    by_name = {r["name"]: r for r in listing["rules"]}
    assert by_name["noisy"]["packets"] == 4_000 and by_name["bad-net"]["packets"] == 20_000
    assert "dport 8080" in by_name["web-syn"]["match"]

    # an address list becomes one rule
    lst = tmp / "list.netset"
    lst.write_text("# test list\n198.19.200.0/24\n198.19.201.7\n")
    out = pyxdp("filter", "import", "veth1", str(lst), "--name", "firehol", *roots).stdout
    assert "2 prefix(es)" in out

    # the exporter reads the same kernel counters
    port = 20000 + secrets.randbelow(20000)
    server = subprocess.Popen([sys.executable, "-m", "pyxdp", "filter", "serve-metrics",
                               "veth1", "--port", str(port), "--duration", "20", *roots],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert "serving metrics" in server.stdout.readline()
        body = ""
        for _ in range(50):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert 'pyxdp_filter_rule_packets_total{iface="veth1",rule="bad-net"} 20000.0' in body
        assert 'pyxdp_filter_rule_packets_total{iface="veth1",rule="noisy"} 4000.0' in body
        assert 'pyxdp_filter_rules{iface="veth1"} 4.0' in body
        assert "pyxdp_filter_top_dropped_source_packets" in body
    finally:
        server.terminate()
        server.wait(timeout=10)

    pyxdp("filter", "del", "veth1", "noisy", *roots)
    assert "noisy" not in pyxdp("filter", "list", "veth1", *roots).stdout
    pyxdp("filter", "detach", "veth1", *roots)
    r = pyxdp("filter", "list", "veth1", *roots, check=False)
    assert r.returncode == 1 and "has no pyxdp filter" in r.stderr


def test_bad_input_is_one_clear_line_and_changes_nothing(env) -> None:
    tb, roots, tmp = env
    pyxdp("filter", "attach", "veth1", "--rules", str(tmp / "rules.toml"), *roots)
    before = pyxdp("filter", "list", "veth1", "--json", *roots).stdout
    bad = tmp / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\nsrc = "198.19.0.1/16"\n')
    for argv, message in [
        (["load", "veth1", str(bad)], "bad.toml:1: rule 'x': src: bad prefix"),
        (["add", "veth1", "y", "dport=80"], "needs proto"),
        (["add", "veth1", "z", "nonsense"], "expected key=value"),
        (["del", "veth1", "nosuch"], "no rule named 'nosuch'"),
        (["attach", "veth1"], "already has a pyxdp filter"),
        (["import", "veth1", str(tmp / "missing.txt")], "cannot read address list"),
    ]:
        r = pyxdp("filter", *argv, *roots, check=False)
        assert r.returncode == 1, argv
        assert message in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
    after = pyxdp("filter", "list", "veth1", "--json", *roots).stdout
    assert json.loads(after)["rules"] == json.loads(before)["rules"]
    r = pyxdp("filter", "attach", "nosuch0", "--netns", tb.ns_name("sink"), check=False)
    assert r.returncode == 1 and "no such interface 'nosuch0'" in r.stderr


def test_every_filter_command_speaks_json(env) -> None:
    _, roots, tmp = env
    att = json.loads(pyxdp("filter", "attach", "veth1", "--rules", str(tmp / "rules.toml"),
                           "--json", *roots).stdout)
    assert att["iface"] == "veth1" and att["rules"] == 2 and att["prog_id"] > 0
    added = json.loads(pyxdp("-j", "filter", "add", "veth1", "web", "proto=tcp",
                             "dport=80", *roots).stdout)
    assert added == {"iface": "veth1", "added": "web"}
    lst = tmp / "l.txt"
    lst.write_text("198.20.0.0/16\n198.21.0.1\n")
    imp = json.loads(pyxdp("filter", "import", "veth1", str(lst), "--json", *roots).stdout)
    assert imp["rule"] == "list" and imp["prefixes"] == 2
    loaded = json.loads(pyxdp("filter", "load", "veth1", str(tmp / "rules.toml"), "--json",
                              *roots).stdout)
    assert loaded["rules"] == 2
    listing = json.loads(pyxdp("filter", "list", "veth1", "-j", *roots).stdout)
    assert [r["name"] for r in listing["rules"]] == ["bad-net", "web-syn"]
    stats = json.loads(pyxdp("filter", "stats", "veth1", "-j", *roots).stdout)
    assert set(stats["stats"]) >= {"bad-net", "web-syn"}
    assert json.loads(pyxdp("filter", "del", "veth1", "web-syn", "--json", *roots).stdout
                      ) == {"iface": "veth1", "deleted": "web-syn"}
    out = pyxdp("filter", "stats", "veth1", *roots).stdout     # the plain table
    assert out.splitlines()[1].split() == ["rule", "packets", "bytes", "pps"]
    det = json.loads(pyxdp("filter", "detach", "veth1", "--json", *roots).stdout)
    assert det["found"] is True
    det = json.loads(pyxdp("filter", "detach", "veth1", "--force", "--json", *roots).stdout)
    assert det["found"] is False and det["steps"] == []


def test_detach_force_recovers_corrupt_state_and_import_replaces(env) -> None:
    _, roots, tmp = env
    pyxdp("filter", "attach", "veth1", "--rules", str(tmp / "rules.toml"), *roots)
    lst = tmp / "l.txt"
    lst.write_text("198.20.0.0/16\n")
    pyxdp("filter", "import", "veth1", str(lst), "--name", "blk", *roots)
    lst.write_text("198.21.0.0/16\n198.22.0.0/16\n")
    pyxdp("filter", "import", "veth1", str(lst), "--name", "blk", *roots)
    rows = json.loads(pyxdp("filter", "list", "veth1", "--json", *roots).stdout)["rules"]
    assert [r["name"] for r in rows] == ["bad-net", "web-syn", "blk"]
    assert "198.21.0.0/16" in rows[2]["match"]
    r = pyxdp("filter", "add", "veth1", "x", "src=10.0.0.0/8", "rate=5", "rate.pps=1",
              *roots, check=False)
    assert r.returncode == 1 and "given more than once" in r.stderr, r.stderr
    state_root = roots[roots.index("--state-root") + 1]
    (state,) = [d for d in (tmp / "state").iterdir()]
    assert str(state).startswith(state_root)
    (state / "state.json").write_text("{broken")
    # a torn state file is rebuilt from the spare copy of the running program's state
    rows = json.loads(pyxdp("filter", "list", "veth1", "--json", *roots).stdout)["rules"]
    assert [r["name"] for r in rows] == ["bad-net", "web-syn", "blk"]
    # every saved copy broken: only --force gets out, and says so
    for name in ("state.json", "state.bak.json", "state.prev.json"):
        (state / name).write_text("{broken")
    r = pyxdp("filter", "detach", "veth1", *roots, check=False)
    assert r.returncode == 1 and "unreadable" in r.stderr and "--force" in r.stderr
    r = pyxdp("filter", "detach", "veth1", "--force", *roots)
    assert "filter detached from veth1 (forced)" in r.stdout, r.stdout
    assert not state.exists()
    r = pyxdp("filter", "list", "veth1", *roots, check=False)
    assert r.returncode == 1 and "has no pyxdp filter" in r.stderr
    pyxdp("filter", "attach", "veth1", *roots)           # and it can be attached again


def test_recreated_interface_and_severed_link_say_what_to_do(env) -> None:
    """The interface deleted and re-created, or the filter's link detached from outside:
    every filter command says the filter no longer runs and how to get it back;
    `attach` refuses unless --replace, which clears the stale state and attaches anew."""
    tb, roots, tmp = env
    ns = tb.ns_name("sink")
    pyxdp("filter", "attach", "veth1", "--rules", str(tmp / "rules.toml"), *roots)
    subprocess.run(["ip", "-n", ns, "link", "del", "veth1"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "add", "veth1", "type", "veth", "peer", "name",
                    "veth9"], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "veth1", "up"], check=True)
    r = pyxdp("filter", "list", "veth1", *roots, check=False)
    assert r.returncode == 1 and "no longer holds the interface" in r.stderr, r.stderr
    assert "attach --replace" in r.stderr
    r = pyxdp("filter", "attach", "veth1", *roots, check=False)
    assert r.returncode == 1 and "no longer runs" in r.stderr and "--replace" in r.stderr
    pyxdp("filter", "attach", "veth1", "--rules", str(tmp / "rules.toml"), "--replace", *roots)
    rows = json.loads(pyxdp("filter", "list", "veth1", "--json", *roots).stdout)["rules"]
    assert [x["name"] for x in rows] == ["bad-net", "web-syn"]
    # a generic forced detach severs the filter's link: the same message, the same way back
    pin_root = roots[roots.index("--pin-root") + 1]
    generic = os.path.join(os.path.dirname(pin_root), "pyxdp")
    pyxdp("detach", "veth1", "--netns", ns, "--pin-root", generic, "--force")
    r = pyxdp("filter", "stats", "veth1", *roots, check=False)
    assert r.returncode == 1 and "no longer holds the interface" in r.stderr, r.stderr
    pyxdp("filter", "attach", "veth1", "--replace", *roots)
    pyxdp("filter", "list", "veth1", *roots)


def test_filter_attach_under_ip_netns_exec_is_refused(env) -> None:
    """`ip netns exec NS pyxdp filter attach` would pin the link in a bpffs that dies with
    the command (and the filter with it): refused with the supported way."""
    tb, roots, _tmp = env
    ns = tb.ns_name("sink")
    own = [a for i, a in enumerate(roots) if a != "--netns" and (i == 0 or roots[i - 1]
                                                                  != "--netns")]
    r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "pyxdp", "filter",
                        "attach", "veth1", *own], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "private to this process's mount namespace" in r.stderr and "--netns" in r.stderr
    from pyxdp import xdp

    assert not tb.call("sink", xdp.status, "veth1").attachments
