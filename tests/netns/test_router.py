"""``pyxdp router`` end to end on the 3-namespace bed (sender - router - receiver, plus a
second egress): ping and TCP across it for IPv4 and IPv6, route and neighbour changes
without reload, TTL 1 answered by the stack, an unresolved neighbour resolved by the stack
and then fast-pathed, refusals, and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from pyxdp.apps.router import Router, RouterError, bed
from pyxdp.testbed import Testbed

pytestmark = pytest.mark.netns


@pytest.fixture
def rbed() -> Iterator[Testbed]:
    with Testbed() as tb:
        bed.build(tb)
        yield tb


@pytest.fixture
def router(rbed: Testbed) -> Iterator[Router]:
    r = rbed.call("rtr", Router.attach, bed.PORTS, "native")
    try:
        yield r
    finally:
        r.close()
        rbed.call("rtr", lambda: Router.force_detach())


def fast(tb: Testbed, r: Router) -> int:
    return tb.call("rtr", r.stats)["forwarded"][0]


def egress(tb: Testbed, r: Router, port: str) -> int:
    return tb.call("rtr", r.egress)[port][0]


@pytest.mark.parametrize("dst", ["198.18.2.2", "2001:db8:2::2"])
def test_ping_and_tcp_across_the_router(rbed: Testbed, router: Router, dst: str) -> None:
    answers = rbed.call("snd", bed.ping, dst, count=4)
    assert len(answers) == 4 and all(a.is_reply and a.src == dst for a in answers)
    before = fast(rbed, router)
    data = os.urandom(3_000_000)
    listener = rbed.call("rcv", bed.tcp_server, dst, 5001)
    got = rbed.thread("rcv").submit(bed.tcp_receive, listener)
    rbed.call("snd", bed.tcp_send, dst, 5001, data)
    ok, (n, digest) = got.get(timeout=60)
    import hashlib
    assert ok and n == len(data) and digest == hashlib.sha256(data).hexdigest()
    # the transfer went through the XDP fast path (not the stack), both directions
    assert fast(rbed, router) - before > len(data) // 1500
    assert egress(rbed, router, "r1") > len(data) // 1500
    assert egress(rbed, router, "r0") > 0          # ACKs back to the sender


@pytest.mark.parametrize("dst,src", [("198.18.2.2", "198.18.1.1"),
                                     ("2001:db8:2::2", "2001:db8:1::1")])
def test_ttl_1_gets_time_exceeded_from_the_stack(rbed: Testbed, router: Router, dst: str,
                                                 src: str) -> None:
    answers = rbed.call("snd", bed.ping, dst, ttl=1)
    assert len(answers) == 1 and answers[0].is_time_exceeded and answers[0].src == src
    assert rbed.call("rtr", router.stats)["pass_ttl"][0] == 1


def test_unresolved_neighbour_resolves_then_fast_path(rbed: Testbed, router: Router) -> None:
    st = rbed.call("rtr", router.stats)
    assert st["forwarded"][0] == 0 and st["pass_no_neighbour"][0] == 0
    assert len(rbed.call("snd", bed.ping, "198.18.3.2", count=1)) == 1
    st = rbed.call("rtr", router.stats)
    # the first request (no ARP entry yet) went to the stack, which resolved and sent it
    assert st["pass_no_neighbour"][0] >= 1
    nn = st["pass_no_neighbour"][0]
    f0 = egress(rbed, router, "r2")
    assert len(rbed.call("snd", bed.ping, "198.18.3.2", count=5)) == 5
    st = rbed.call("rtr", router.stats)
    assert st["pass_no_neighbour"][0] == nn          # no more slow-path packets
    assert egress(rbed, router, "r2") - f0 == 5      # all five requests at XDP


def test_route_change_takes_effect_without_reload(rbed: Testbed, router: Router) -> None:
    ids = rbed.call("rtr", router.program_ids)
    # 198.18.200.1 lives on rcv (lo); first routed via r1, then moved to r2 (rcv2 also has
    # it): replies come from whichever host the route names, counters follow
    rbed.exec("rcv", ["ip", "addr", "add", "198.18.200.1/32", "dev", "lo"])
    rbed.exec("rcv2", ["ip", "addr", "add", "198.18.200.1/32", "dev", "lo"])
    rbed.exec("rtr", ["ip", "route", "add", "198.18.200.1/32", "via", "198.18.2.2"])
    assert len(rbed.call("snd", bed.ping, "198.18.200.1", count=2)) == 2
    r1, r2 = egress(rbed, router, "r1"), egress(rbed, router, "r2")
    assert len(rbed.call("snd", bed.ping, "198.18.200.1", count=3)) == 3
    assert egress(rbed, router, "r1") - r1 == 3 and egress(rbed, router, "r2") == r2
    rbed.exec("rtr", ["ip", "route", "replace", "198.18.200.1/32", "via", "198.18.3.2"])
    assert len(rbed.call("snd", bed.ping, "198.18.200.1", count=2)) == 2   # resolves r2 side
    r1, r2 = egress(rbed, router, "r1"), egress(rbed, router, "r2")
    assert len(rbed.call("snd", bed.ping, "198.18.200.1", count=3)) == 3
    assert egress(rbed, router, "r2") - r2 == 3 and egress(rbed, router, "r1") == r1
    assert rbed.call("rtr", router.program_ids) == ids          # no reload


def test_neighbour_change_takes_effect_without_reload(rbed: Testbed, router: Router) -> None:
    assert len(rbed.call("snd", bed.ping, "198.18.2.2", count=2)) == 2
    # point the neighbour at a MAC nobody has: the fast path follows at once (the
    # receiver's veth drops frames for another MAC), then back to the right one
    right = rbed.interfaces[("rcv", "c0")].mac
    rbed.neighbour("rtr", "r1", "198.18.2.2", "02:00:5e:00:99:99")
    assert rbed.call("snd", bed.ping, "198.18.2.2", count=2, timeout=0.5) == []
    rbed.neighbour("rtr", "r1", "198.18.2.2", right)
    f = fast(rbed, router)
    assert len(rbed.call("snd", bed.ping, "198.18.2.2", count=2)) == 2
    assert fast(rbed, router) - f == 4


def test_direct_flag_skips_policy_rules(rbed: Testbed) -> None:
    # a rule sends traffic from 198.18.1.2 to table 100, whose route leaves via r2
    rbed.exec("rtr", ["ip", "route", "add", "198.18.2.0/24", "via", "198.18.3.2", "table",
                      "100"])
    rbed.exec("rtr", ["ip", "rule", "add", "from", "198.18.1.2", "table", "100"])
    rbed.neighbour("rtr", "r2", "198.18.3.2", rbed.interfaces[("rcv2", "d0")].mac)
    rbed.neighbour("rtr", "r1", "198.18.2.2", rbed.interfaces[("rcv", "c0")].mac)
    for direct, port in ((False, "r2"), (True, "r1")):
        r = rbed.call("rtr", Router.attach, bed.PORTS, "native", direct=direct)
        try:
            rbed.call("snd", bed.ping, "198.18.2.2", count=2, timeout=0.5)
            assert egress(rbed, r, port) >= 2, (direct, rbed.call("rtr", r.egress))
        finally:
            rbed.call("rtr", r.detach)


def test_restart_keeps_forwarding_and_counters(rbed: Testbed, router: Router) -> None:
    assert len(rbed.call("snd", bed.ping, "198.18.2.2", count=3)) == 3
    before = fast(rbed, router)
    rbed.call("rtr", router.close)
    again = rbed.call("rtr", Router.open)
    try:
        assert fast(rbed, again) == before
        assert len(rbed.call("snd", bed.ping, "198.18.2.2", count=2)) == 2
        assert fast(rbed, again) == before + 4
    finally:
        again.close()


def test_bad_input(rbed: Testbed) -> None:
    def attach(ports: Any, **kw: Any) -> Any:
        return rbed.call("rtr", Router.attach, ports, "native", **kw)

    with pytest.raises(RouterError, match="duplicate port 'r1'"):
        attach(["r0", "r1", "r1"])
    with pytest.raises(RouterError, match="'s0'.*no such interface.*network namespace"):
        attach(["r0", "s0"])                                  # s0 is in namespace snd
    with pytest.raises(RouterError, match="'lo' is a loopback device"):
        attach(["r0", "lo"])
    with pytest.raises(RouterError, match="one or more"):
        attach([])
    # interfaces without (native) XDP support: a bridge device, and a veth whose peer
    # neither runs XDP nor has GRO on (it cannot take redirected frames)
    rbed.exec("rtr", ["ip", "link", "add", "br9", "type", "bridge"])
    with pytest.raises(RouterError, match="'br9' \\(bridge\\) has no native XDP support"):
        attach(["r0", "br9"])
    rbed.set_gro("rcv", "c0", False)
    with pytest.raises(RouterError, match="'r1' cannot transmit frames the router"
                                          " redirects.*peer runs an XDP program or has GRO"):
        attach(bed.PORTS)
    rbed.set_gro("rcv", "c0", True)
    rbed.exec("rtr", ["ip", "link", "set", "r2", "mtu", "1400"])
    with pytest.raises(RouterError, match="MTU mismatch.*r2 1400"):
        attach(bed.PORTS)
    r = attach(bed.PORTS, allow_mtu_mismatch=True)
    try:
        with pytest.raises(RouterError, match="already has a pyxdp router"):
            attach(["r0", "r1"])
    finally:
        rbed.call("rtr", r.detach)
    # nothing was left attached by the refusals
    from pyxdp import xdp
    for p in bed.PORTS:
        assert rbed.call("rtr", xdp.status, p).attachments == ()


def _cli(tb: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "src")}
    return subprocess.run([sys.executable, "-m", "pyxdp", "router", *args, "--netns",
                           tb.ns_name("rtr")], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_attach_stats_metrics_detach(rbed: Testbed, tmp_path: Any) -> None:
    cfg = tmp_path / "router.toml"
    cfg.write_text('ports = ["r0", "r1", "r2"]\nmode = "native"\n')
    p = _cli(rbed, "attach", "--config", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    assert set(json.loads(p.stdout)["prog_ids"]) == {"r0", "r1", "r2"}
    try:
        assert len(rbed.call("snd", bed.ping, "198.18.2.2", count=3)) == 3
        p = _cli(rbed, "stats", "--json")
        assert p.returncode == 0, p.stderr
        d = json.loads(p.stdout)
        assert d["egress"]["r1"]["packets"] >= 2 and d["reasons"]["forwarded"]["packets"] >= 4
        p = _cli(rbed, "stats")
        assert p.returncode == 0 and "egress r1" in p.stdout
        srv = subprocess.Popen([sys.executable, "-m", "pyxdp", "router", "serve-metrics",
                                "--netns", rbed.ns_name("rtr"), "--port", "19467",
                                "--duration", "20"],
                               stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.path.join(
                                   os.path.dirname(__file__), "..", "..", "src")})
        try:
            assert srv.stdout is not None
            srv.stdout.readline()            # "serving ..." once the server listens
            body = urllib.request.urlopen("http://127.0.0.1:19467/metrics", timeout=10
                                          ).read().decode()
        finally:
            srv.terminate()
            srv.wait(timeout=10)
        line = [x for x in body.splitlines()
                if x.startswith('pyxdp_router_egress_packets_total{iface="r1"}')]
        assert line and float(line[0].split()[-1]) == d["egress"]["r1"]["packets"]
        p = _cli(rbed, "attach", "r0", "r1")
        assert p.returncode == 1 and "already has a pyxdp router" in p.stderr
    finally:
        p = _cli(rbed, "detach")
    assert p.returncode == 0 and "router detached" in p.stdout
    p = _cli(rbed, "stats")
    assert p.returncode == 1 and "no pyxdp router" in p.stderr


def test_cli_bad_config(rbed: Testbed, tmp_path: Any) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('ports = ["r0"]\nspeed = 3\n')
    p = _cli(rbed, "attach", "--config", str(cfg))
    assert p.returncode == 1 and "unknown key(s) speed" in p.stderr
    p = _cli(rbed, "attach")
    assert p.returncode == 2 and "one or more interfaces" in p.stderr


def test_router_runs_behind_the_filter_in_a_chain(rbed: Testbed, tmp_path: Any) -> None:
    """A pyxdp chain on r0 with the filter as its first stage: the router joins it as the
    stage ``router`` (its other ports keep links of their own), so traffic is filtered
    then forwarded on the same interface; a filter rule against the sender stops its
    pings before the router sees them; detaching the router leaves the chain its filter."""
    from pyxdp.apps.chain import Chain
    from pyxdp.apps.filter import Filter, Prefixes, Rule, RuleSet

    cpin = f"/sys/fs/bpf/pyxdprc-{os.getpid()}"
    croots = {"pin_root": cpin, "state_root": str(tmp_path / "chain")}
    fpin, fstate = f"{cpin}-filter", str(tmp_path / "filter")

    def setup() -> tuple[Chain, Filter]:
        ch = Chain.attach("r0", "native", **croots)
        f = Filter.attach("r0", rules=RuleSet(), pin_root=fpin, state_root=fstate,
                          chain=ch)
        return ch, f

    ch, f = rbed.call("rtr", setup)
    r = None
    try:
        r = rbed.call("rtr", lambda: Router.attach(bed.PORTS, "native", chain_roots=croots))
        st = rbed.call("rtr", ch.status)
        assert [s["name"] for s in st["stages"]] == ["filter", "router"]
        assert all(p.chain is None for p in r.ports if p.name != "r0")
        assert rbed.call("rtr", r.program_ids)["r0"] > 0
        answers = rbed.call("snd", bed.ping, "198.18.2.2", count=3)
        assert len(answers) == 3 and all(a.is_reply for a in answers)
        assert fast(rbed, r) >= 3                       # forwarded at XDP, behind the filter
        rbed.call("rtr", f.apply, RuleSet([Rule("snd", src=Prefixes.parse(["198.18.1.2"]))]))
        before = fast(rbed, r)
        assert rbed.call("snd", bed.ping, "198.18.2.2", count=2, timeout=0.5) == []
        assert rbed.call("rtr", f.stats)["snd"][0] >= 2
        assert fast(rbed, r) == before                  # the router never saw them
        rbed.call("rtr", f.apply, RuleSet())
        assert len(rbed.call("snd", bed.ping, "198.18.2.2", count=2)) == 2
        r2 = rbed.call("rtr", lambda: Router.open())    # a new control plane finds it
        assert rbed.call("rtr", r2.program_ids) == rbed.call("rtr", r.program_ids)
        rbed.call("rtr", r2.close)
        done = rbed.call("rtr", r.detach)
        r = None
        assert any("removed stage 'router'" in d for d in done), done
        st = rbed.call("rtr", ch.status)
        assert [s["name"] for s in st["stages"]] == ["filter"]
    finally:
        if r is not None:
            rbed.call("rtr", lambda: Router.force_detach())
        rbed.call("rtr", f.detach)
        rbed.call("rtr", ch.detach)
