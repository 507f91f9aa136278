"""`pyxdp chain` on a real veth under generator traffic: order, atomic changes, state.

A counting PASS stage (``first``) and a counting DROP stage (``last``) stay in the chain
while a third stage is added, moved and removed again and again under traffic.  Every
packet that reaches XDP must run through a whole generation: ``first`` and ``last`` see
exactly the same packets, whatever was swapped in between.  The stages are clang-built
objects the chain rewrites (tests/data/c/chain_stages.c).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading

import pytest

from pyxdp import xdp
from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

pytestmark = [pytest.mark.netns, pytest.mark.kernel]
OBJ = os.path.join(os.path.dirname(__file__), "..", "data", "obj", "chain_stages.o")


@pytest.fixture
def env(tmp_path):
    with Testbed() as tb:
        for ns in ("gen", "sink"):
            tb.namespace(ns)
            tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.6.1/24", "198.18.6.2/24"))
        base = f"/sys/fs/bpf/pyxdpch-{secrets.token_hex(4)}"
        pin_root = f"{base}/pyxdp-chain"          # apps pin under <root>/pyxdp-<app>
        roots = ["--netns", tb.ns_name("sink"), "--pin-root", pin_root,
                 "--state-root", str(tmp_path / "state")]
        try:
            yield tb, roots, pin_root, tmp_path / "state"
        finally:
            subprocess.run([sys.executable, "-m", "pyxdp", "chain", "detach", "veth1", *roots],
                           capture_output=True, timeout=60)
            shutil.rmtree(base, ignore_errors=True)


def pyxdp(*argv: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "pyxdp", *argv], capture_output=True, text=True,
                       timeout=60)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def counts(tb, pin_root: str, state_root) -> dict[str, int]:
    from pyxdp.apps.chain import Chain

    def read() -> dict[str, int]:
        ch = Chain.open("veth1", pin_root=pin_root, state_root=str(state_root))
        out = {}
        for name, slot in (("first", 0), ("last", 1), ("middle", 0)):
            try:
                maps = ch.stage_maps(name)
            except Exception:
                continue
            try:
                out[name] = int(maps["seen"][slot])
            finally:
                for m in maps.values():
                    m.close()
        return out

    return tb.call("sink", read)


def send(tb: Testbed, count: int, duration: float = 8.0) -> int:
    gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
    frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac, dport=9)

    def go() -> int:
        with Generator(gen.ifindex, frame) as g:
            return g.run(count, duration=duration).sent

    return tb.call("gen", go)


def test_chain_order_and_changes_under_traffic(env) -> None:
    tb, roots, pin_root, state_root = env
    r = pyxdp("chain", "attach", "veth1", "--mode", "native", *roots)
    assert "attached an empty chain" in r.stdout
    pyxdp("chain", "add", "veth1", "first", OBJ, "--program", "stage_pass", "--priority",
          "10", *roots)
    pyxdp("chain", "add", "veth1", "last", OBJ, "--program", "stage_drop", "--priority", "30",
          *roots)
    st = json.loads(pyxdp("chain", "list", "veth1", "--json", *roots).stdout)
    assert [s["name"] for s in st["stages"]] == ["first", "last"]
    att = tb.call("sink", xdp.status, "veth1").attachments
    assert len(att) == 1 and att[0].prog_id == st["root_prog_id"] and att[0].link_id

    sent = send(tb, 20_000)
    c = counts(tb, pin_root, state_root)
    assert c["first"] == c["last"] > 0 and c["first"] <= sent

    # changes under a running generator: a middle stage comes and goes, moves around
    result: dict[str, int] = {}
    t = threading.Thread(target=lambda: result.update(sent=send(tb, 100_000_000, 10.0)))
    t.start()
    try:
        for i in range(3):
            pyxdp("chain", "add", "veth1", "middle", OBJ, "--program", "stage_pass",
                  "--priority", "20", *roots)
            pyxdp("chain", "move", "veth1", "middle", str(5 if i % 2 else 25), *roots)
            pyxdp("chain", "remove", "veth1", "middle", *roots)
        still_sending = t.is_alive()
    finally:
        t.join(timeout=60)
    assert still_sending, "the generator ended before the changes: they were not under load"
    c2 = counts(tb, pin_root, state_root)
    assert "middle" not in c2
    # every packet ran a whole generation: the stages that never left saw the same packets
    assert c2["first"] == c2["last"]
    assert c2["first"] - c["first"] <= result["sent"]
    assert c2["first"] > c["first"]
    st = json.loads(pyxdp("chain", "list", "veth1", "--json", *roots).stdout)
    assert st["generation"] == 2 + 3 * 3
    # the maps kept their counts through 9 generations: pinned once, reused by each


def test_refusals_are_one_line(env) -> None:
    tb, roots, pin_root, _state_root = env
    r = pyxdp("chain", "add", "veth1", "x", OBJ, *roots, ok=False)
    assert r.returncode == 1 and "no chain" in r.stderr
    pyxdp("chain", "attach", "veth1", *roots)
    r = pyxdp("chain", "attach", "veth1", *roots, ok=False)
    assert r.returncode == 1 and "already has a chain" in r.stderr
    r = pyxdp("chain", "add", "veth1", "x", OBJ, *roots, ok=False)      # 3 XDP programs
    assert r.returncode == 1 and "stage_pass" in r.stderr, r.stderr
    tail = os.path.join(os.path.dirname(OBJ), "tail_call.o")
    r = pyxdp("chain", "add", "veth1", "t", tail, "--program", "tail_entry", *roots, ok=False)
    assert r.returncode == 1 and "already uses bpf_tail_call" in r.stderr, r.stderr
    r = pyxdp("chain", "add", "veth1", "p", OBJ, "--program", "stage_pass", "--continue-on",
              "maybe", *roots, ok=False)
    assert r.returncode == 1 and "unknown verdict" in r.stderr
    r = pyxdp("chain", "remove", "veth1", "ghost", *roots, ok=False)
    assert r.returncode == 1 and "no stage 'ghost'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # a generic detach leaves the chain alone unless forced
    generic = os.path.join(os.path.dirname(pin_root), "pyxdp")
    r = pyxdp("detach", "veth1", "--netns", roots[1], "--pin-root", generic, ok=False)
    assert r.returncode == 1 and "attached by `pyxdp chain`" in r.stderr
    assert tb.call("sink", xdp.status, "veth1").attachments


XDPFILT = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_ip.o"     # a listed source: DROP


def test_dump_captures_verdicts_into_pcapng(env) -> None:
    """`pyxdp dump -w` on a running chain (xdp-filter's IP program, unmodified, in front of
    a counting stage): the pcapng has every packet with the verdict it got, scapy reads it
    back, and when the dump ends the chain runs without capture code again."""
    import ipaddress
    import time

    from scapy.layers.inet import IP  # noqa: F401  (registers the decoders)
    from scapy.layers.l2 import Ether  # noqa: F401
    from scapy.utils import PcapNgReader

    from pyxdp.apps.chain import Chain

    tb, roots, pin_root, state_root = env
    gen_if = tb.interfaces[("gen", "veth0")]
    denied = gen_if.ip4
    # a static neighbour: the sink answers the UDP with ICMP and would ARP for the
    # sender, whose reply would be one more packet at XDP
    subprocess.run(["ip", "-n", tb.ns_name("sink"), "neigh", "replace", denied, "lladdr",
                    gen_if.mac, "dev", "veth1", "nud", "permanent"], check=True)
    pyxdp("chain", "attach", "veth1", "--mode", "native", *roots)
    pyxdp("chain", "add", "veth1", "filter", XDPFILT, "--priority", "10", *roots)
    pyxdp("chain", "add", "veth1", "count", OBJ, "--program", "stage_pass", *roots)

    def ban() -> None:
        ch = Chain.open("veth1", pin_root=pin_root, state_root=str(state_root))
        maps = ch.stage_maps("filter")
        try:
            maps["filter_ipv4"].update(ipaddress.IPv4Address(denied).packed, 1)
        finally:
            for m in maps.values():
                m.close()

    def plain_root_insns() -> int:
        from pyxdp.kernel import Program

        prog_id = tb.call("sink", xdp.status, "veth1").attachments[0].prog_id
        with Program.from_id(prog_id) as p:
            return p.info().xlated_size // 8

    before = plain_root_insns()
    out = state_root.parent / "dump.pcapng"
    dump = subprocess.Popen([sys.executable, "-m", "pyxdp", "dump", "veth1", "-w", str(out),
                             "--count", "30", "--duration", "30", *roots],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        state = state_root / os.listdir(state_root)[0] / "state.json"
        for _ in range(200):                       # wait for the capture to be swapped in
            if json.loads(state.read_text()).get("capture"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the dump never turned the capture on")
        assert plain_root_insns() > before          # the capture generation runs
        send(tb, 10)                                # from the gen address: passes
        tb.call("sink", ban)
        send(tb, 20)                                # now listed: dropped by the filter
        _, err = dump.communicate(timeout=30)
        assert dump.returncode == 0, err
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    pkts = list(PcapNgReader(str(out)))
    assert len(pkts) == 30
    comments = [p.comment.decode() if isinstance(p.comment, bytes) else p.comment
                for p in pkts]
    verdicts = [c.split()[0] for c in comments]
    assert verdicts == ["verdict=PASS"] * 10 + ["verdict=DROP"] * 20
    assert all(p["IP"].src == denied for p in pkts)
    assert "30 packets shown" in err
    # the dump is over: capture off, the plain generation back
    assert json.loads(state.read_text())["capture"] is None
    assert plain_root_insns() == before


def test_top_shows_rates_and_stages(env) -> None:
    """`pyxdp top --json` under traffic: the chain's root with packets/s and ns/packet from
    the kernel's run statistics, and the stages in order with their program ids."""
    tb, roots, _pin_root, _state_root = env
    pyxdp("chain", "attach", "veth1", "--mode", "native", *roots)
    pyxdp("chain", "add", "veth1", "first", OBJ, "--program", "stage_pass", "--priority",
          "10", *roots)
    pyxdp("chain", "add", "veth1", "last", OBJ, "--program", "stage_drop", "--priority", "30",
          *roots)
    t = threading.Thread(target=lambda: send(tb, 100_000_000, 4.0))
    t.start()
    try:
        r = pyxdp("top", "--json", "--interval", "1", *roots)
    finally:
        t.join(timeout=30)
    rows = [x for x in json.loads(r.stdout) if x["iface"] == "veth1"]
    assert len(rows) == 1
    row = rows[0]
    assert row["program"] == "pyxdp_root" and row["link_id"] > 0
    assert row["pps"] > 1000 and row["ns_per_packet"] > 0
    assert [s["name"].split()[0] for s in row["stages"]] == ["first", "last"]
    assert all(s["prog_id"] for s in row["stages"])
    assert "stage_drop" in row["stages"][1]["name"]


def test_dump_before_and_after_the_programs(env) -> None:
    """`pyxdp dump --where both`: each packet twice, as it entered (BEFORE, before any
    stage ran) and with the verdict it got, the same bytes both times."""
    import time

    tb, roots, _pin_root, state_root = env
    gen_if = tb.interfaces[("gen", "veth0")]
    subprocess.run(["ip", "-n", tb.ns_name("sink"), "neigh", "replace", gen_if.ip4, "lladdr",
                    gen_if.mac, "dev", "veth1", "nud", "permanent"], check=True)
    pyxdp("chain", "attach", "veth1", "--mode", "native", *roots)
    pyxdp("chain", "add", "veth1", "drop", OBJ, "--program", "stage_drop", *roots)
    dump = subprocess.Popen([sys.executable, "-m", "pyxdp", "dump", "veth1", "--where", "both",
                             "--count", "20", "--duration", "30", "--json", *roots],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        state = state_root / os.listdir(state_root)[0] / "state.json"
        for _ in range(200):
            if json.loads(state.read_text()).get("capture"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the dump never turned the capture on")
        send(tb, 10)
        out, err = dump.communicate(timeout=30)
        assert dump.returncode == 0, err
    finally:
        if dump.poll() is None:
            dump.kill()
            dump.wait()
    rows = json.loads(out)["packets"]
    assert [r["verdict"] for r in rows] == ["BEFORE", "DROP"] * 10
    assert all(a["data"] == b["data"] for a, b in zip(rows[::2], rows[1::2]))
    assert json.loads(state.read_text())["capture"] is None


def test_filter_runs_as_a_stage_of_the_chain(env) -> None:
    """`Filter.attach` on an interface with a chain joins it as stage ``filter`` (in front
    of a counting stage): denied packets stop at the filter, the others go on to the next
    stage; rule changes are chain swaps; another chain change keeps the filter's rules;
    a new process reopens it; detach leaves the chain running without it."""
    from pyxdp.apps.chain import Chain
    from pyxdp.apps.filter import Filter, Prefixes, Rule, RuleSet

    tb, roots, pin_root, state_root = env
    gen_if = tb.interfaces[("gen", "veth0")]
    fpin, fstate = f"{pin_root}-filter", str(state_root.parent / "fstate")
    # a static neighbour: the sink's ICMP answers would ARP for the sender otherwise
    subprocess.run(["ip", "-n", tb.ns_name("sink"), "neigh", "replace", gen_if.ip4, "lladdr",
                    gen_if.mac, "dev", "veth1", "nud", "permanent"], check=True)
    pyxdp("chain", "attach", "veth1", "--mode", "native", *roots)
    pyxdp("chain", "add", "veth1", "count", OBJ, "--program", "stage_pass", *roots)

    def chain() -> Chain:
        return Chain.open("veth1", pin_root=pin_root, state_root=str(state_root))

    def seen() -> int:
        maps = chain().stage_maps("count")
        try:
            return int(maps["seen"][0])
        finally:
            for m in maps.values():
                m.close()

    deny_gen = RuleSet([Rule("gen", src=Prefixes.parse([gen_if.ip4]))])
    f = tb.call("sink", lambda: Filter.attach("veth1", rules=deny_gen, pin_root=fpin,
                                              state_root=fstate, chain=chain()))
    try:
        assert tb.call("sink", lambda: f.chain_stage) == "filter"
        st = tb.call("sink", lambda: chain().status())
        assert [s["name"] for s in st["stages"]] == ["filter", "count"]
        assert tb.call("sink", f.program_id) > 0
        send(tb, 200)
        assert tb.call("sink", f.stats)["gen"][0] == 200
        assert tb.call("sink", seen) == 0                  # dropped before the counter
        # a rule change is one chain swap: the filter now lets gen through
        tb.call("sink", f.apply, RuleSet([Rule("other", src=Prefixes.parse(
            ["198.19.0.0/16"]))]))
        send(tb, 100)
        assert tb.call("sink", seen) == 100
        # another chain change rebuilds every stage: the filter keeps its rules and maps
        pyxdp("chain", "add", "veth1", "count2", OBJ, "--program", "stage_pass",
              "--priority", "60", *roots)
        tb.call("sink", f.apply, deny_gen)
        send(tb, 50)
        assert tb.call("sink", seen) == 100
        g = tb.call("sink", lambda: Filter.open("veth1", fpin, state_root=fstate))
        try:
            # "gen" was deleted and added again: a new rule, its counter starts afresh
            assert tb.call("sink", g.stats)["gen"][0] == 50
            assert tb.call("sink", lambda: g.generation) == 3
            assert tb.call("sink", g.program_id) == tb.call("sink", f.program_id)
        finally:
            tb.call("sink", g.close)
    finally:
        tb.call("sink", f.detach)
    st = tb.call("sink", lambda: chain().status())
    assert [s["name"] for s in st["stages"]] == ["count", "count2"]
    send(tb, 10)
    assert tb.call("sink", seen) == 110


def test_filter_cli_joins_the_chain_and_leaves_it(env, tmp_path) -> None:
    """`pyxdp filter attach` on an interface with a chain: a stage of it (the JSON says
    which), `pyxdp chain list` shows it first, `pyxdp filter detach` removes the stage."""
    _tb, roots, pin_root, state_root = env
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\nname = "bad"\nsrc = "198.19.0.0/16"\n')
    netns = roots[roots.index("--netns") + 1]
    froots = ["--netns", netns, "--pin-root", f"{pin_root}-f", "--state-root",
              str(tmp_path / "fs"), "--chain-pin-root", pin_root, "--chain-state-root",
              str(state_root)]
    pyxdp("chain", "attach", "veth1", *roots)
    pyxdp("chain", "add", "veth1", "count", OBJ, "--program", "stage_pass", *roots)
    out = json.loads(pyxdp("filter", "attach", "veth1", "--rules", str(rules), "--json",
                           *froots).stdout)
    assert out["chain_stage"] == "filter" and out["prog_id"] > 0
    listed = json.loads(pyxdp("chain", "list", "veth1", "--json", *roots).stdout)
    assert [s["name"] for s in listed["stages"]] == ["filter", "count"]
    r = pyxdp("filter", "attach", "veth1", *froots, ok=False)
    assert r.returncode != 0 and "already" in r.stderr
    # the other filter commands work on the stage as on a standalone filter
    pyxdp("filter", "add", "veth1", "dns-q", "expr=udp dst port 53", *froots[:6])
    stats = json.loads(pyxdp("filter", "stats", "veth1", "--json", *froots[:6]).stdout)
    assert {"bad", "dns-q"} <= set(stats["stats"]), stats
    # the stage removed behind the filter's back: said so, and --replace recovers
    pyxdp("chain", "remove", "veth1", "filter", *roots)
    r = pyxdp("filter", "stats", "veth1", *froots[:6], ok=False)
    assert r.returncode == 1 and "was removed from the chain" in r.stderr, r.stderr
    pyxdp("filter", "attach", "veth1", "--replace", "--rules", str(rules), *froots)
    pyxdp("filter", "detach", "veth1", *froots[:6])
    listed = json.loads(pyxdp("chain", "list", "veth1", "--json", *roots).stdout)
    assert [s["name"] for s in listed["stages"]] == ["count"]
