"""``pyxdp lb`` end to end on the bed of :mod:`pyxdp.apps.lb.bed`: a client, the LB and
three backends on one L2 segment, each backend a real HTTP and echo service with the VIPs
on its loopback and pyxdp tunnel decapsulating what the LB encapsulates.  Replies go from
the backends straight to the client (DSR).  Real TCP connections to the VIPs complete in
every forwarding method over IPv4 and IPv6; the spread of 10,000 flows follows the
weights; removing one of three reals moves only its flows; established connections
survive adding a real and a drain; a failing health check takes a real out within
fall x interval; a control-plane restart keeps balancing; bad changes are refused with
nothing changed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from pyxdp.apps.lb import LbError, LoadBalancer
from pyxdp.apps.lb import bed as lbed
from pyxdp.apps.lb.health import HealthChecker
from pyxdp.testbed import Testbed

pytestmark = pytest.mark.netns
SRC = Path(__file__).resolve().parents[2] / "src"      # this checkout, for subprocesses
PIN, STATE = "/sys/fs/bpf/pyxdp-lbtest", "/run/pyxdp-lbtest"
NAMES = {f"b{i}" for i in (1, 2, 3)}
VIPS = {("ipip", 4): "198.18.100.1", ("gue", 4): "198.18.100.2", ("dsr", 4): "198.18.100.3",
        ("ipip", 6): "2001:db8:100::1", ("gue", 6): "2001:db8:100::2",
        ("dsr", 6): "2001:db8:100::3"}
SPREAD_VIP = "198.18.100.9"


@pytest.fixture(scope="module")
def bed() -> Iterator[tuple[Testbed, lbed.Bed]]:
    with Testbed() as tb:
        b = lbed.Bed(tb, 3, vips=(*VIPS.values(), SPREAD_VIP))
        try:
            b.start_services()
            b.start_decap()
            yield tb, b
        finally:
            tb.call("lb", LoadBalancer.force_detach, PIN, state_root=STATE)
            b.close()


def settings(**kw: Any) -> dict[str, Any]:
    return {"ports": ["l0"], "mode": "native", "ring_size": 1021, "source4": lbed.LB4,
            "source6": lbed.LB6, "icmp_source4": lbed.LB4, "icmp_source6": lbed.LB6,
            "second_hop": 30, **kw}


def service(method: str, fam: int, **kw: Any) -> dict[str, Any]:
    reals = [{"address": (lbed.real4 if fam == 4 else lbed.real6)(i)} for i in (1, 2, 3)]
    return {"vip": VIPS[(method, fam)], "port": 80, "proto": "tcp", "method": method,
            "reals": reals, **kw}


@pytest.fixture
def lb(bed: tuple[Testbed, lbed.Bed]) -> Iterator[LoadBalancer]:
    tb, _ = bed
    tb.call("lb", LoadBalancer.force_detach, PIN, state_root=STATE)
    cfg = settings(service=[service(m, f) for (m, f) in VIPS] + [
        service("ipip", 4, port=7), service("ipip", 6, port=7)])
    cfg["service"][-2]["vip"] = VIPS[("ipip", 4)]
    cfg["service"][-1]["vip"] = VIPS[("ipip", 6)]
    lb = tb.call("lb", LoadBalancer.attach, cfg, pin_root=PIN, state_root=STATE)
    try:
        yield lb
    finally:
        tb.call("lb", lb.close)
        tb.call("lb", LoadBalancer.force_detach, PIN, state_root=STATE)


def get(tb: Testbed, vip: str, n: int = 1) -> list[str]:
    return tb.call("c", lambda: [lbed.http_get(vip) for _ in range(n)])


@pytest.mark.parametrize("key", list(VIPS), ids=lambda k: f"{k[0]}-ipv{k[1]}")
def test_tcp_to_the_vip_completes_in_every_method(bed: Any, lb: LoadBalancer,
                                                  key: tuple[str, int]) -> None:
    tb, _ = bed
    got = get(tb, VIPS[key], 30)
    assert set(got) <= NAMES and len(set(got)) >= 2, got     # 30 flows over 3 reals
    st = tb.call("lb", lb.stats)
    svc = next(v for k, v in st["services"].items() if k.startswith(
        f"[{VIPS[key]}]" if key[1] == 6 else VIPS[key]) and k.endswith(":80/tcp"))
    assert svc["total"][0] >= 30 * 3              # SYN, ACK, request, ACK, FIN...
    assert st["reasons"]["forwarded"][0] >= 30 * 3
    assert st["reasons"]["no_route"][0] == 0 and st["reasons"]["error"][0] == 0


def probe_frames(lb_mac: str, n: int) -> list[tuple[int, bytes]]:
    vip = SPREAD_VIP
    return [(sport, bytes(Ether(src=lbed.mac(1, 2), dst=lb_mac) / IP(
        src="198.19.50.1", dst=vip, ttl=64) / TCP(sport=sport, dport=80, flags="S")
        / Raw(b"x"))) for sport in range(10000, 10000 + n)]


def real_of(data: bytes) -> str:
    return str(Ether(data)[IP].dst)          # IPIP: the outer destination is the real


def run_flows(tb: Testbed, lb: LoadBalancer, frames: list[tuple[int, bytes]]
              ) -> dict[int, str]:
    """Every frame through the attached program (BPF_PROG_TEST_RUN in the LB's namespace):
    sport -> the real the LB chose."""
    from pyxdp.kernel import Program

    def go() -> dict[int, str]:
        ifindex = lb.ports[0].ifindex
        with Program.from_id(lb.program_ids()["l0"]) as p:
            out = {}
            for sport, f in frames:
                r = p.run_packet(f, ingress_ifindex=ifindex)
                assert r.retval == 3, r.retval             # XDP_TX: out where it came in
                out[sport] = real_of(r.packet)
            return out
    return tb.call("lb", go)


def test_spread_follows_the_weights_and_removal_moves_only_its_flows(
        bed: Any, lb: LoadBalancer) -> None:
    tb, _ = bed
    weights = {lbed.real4(1): 1, lbed.real4(2): 2, lbed.real4(3): 1}
    tb.call("lb", lb.add_service, f"{SPREAD_VIP}:80/tcp", "ipip",
            reals=[{"address": a, "weight": w} for a, w in weights.items()])
    frames = probe_frames(lbed.mac(1, 1), 10000)
    before = run_flows(tb, lb, frames)
    counts = {a: sum(1 for v in before.values() if v == a) for a in weights}
    total = sum(weights.values())
    chi2 = sum((counts[a] - 10000 * w / total) ** 2 / (10000 * w / total)
               for a, w in weights.items())
    assert chi2 < 13.8, (counts, chi2)            # chi-square, 2 dof, p = 0.001
    # remove one of three (weights 1:1:1 now, so 1/N = 1/3)
    tb.call("lb", lb.set_weight, f"{SPREAD_VIP}:80/tcp", lbed.real4(2), 1)
    tb.call("lb", lb.flush_connections)
    equal = run_flows(tb, lb, frames)
    tb.call("lb", lb.remove_real, f"{SPREAD_VIP}:80/tcp", lbed.real4(2))
    tb.call("lb", lb.flush_connections)
    after = run_flows(tb, lb, frames)
    assert lbed.real4(2) not in after.values()
    moved = sum(1 for s in frames if equal[s[0]] != after[s[0]]) / len(frames)
    others = sum(1 for s in frames if equal[s[0]] != lbed.real4(2)
                 and equal[s[0]] != after[s[0]])
    assert moved <= 1 / 3 + 0.02, moved
    assert others / len(frames) <= 0.02, others


def test_established_connections_survive_adding_a_real_and_a_drain(
        bed: Any, lb: LoadBalancer) -> None:
    tb, _ = bed
    vip = VIPS[("ipip", 4)]
    key = f"{vip}:7/tcp"
    tb.call("lb", lb.remove_real, key, lbed.real4(3))
    conns = tb.call("c", lambda: [lbed.EchoConn(vip) for _ in range(12)])
    try:
        first = [tb.call("c", c.say, "hello") for c in conns]
        assert set(first) <= {"b1", "b2"}
        tb.call("lb", lb.add_real, key, lbed.real4(3))
        again = [tb.call("c", c.say, "after add") for c in conns]
        assert again == first
        # new connections do reach the added real
        fresh = tb.call("c", lambda: [lbed.EchoConn(vip) for _ in range(30)])
        try:
            assert "b3" in {tb.call("c", c.say, "new") for c in fresh}
        finally:
            for c in fresh:
                tb.call("c", c.close)
        # drain b1: its connections go on, no new ones reach it
        tb.call("lb", lb.drain, key, lbed.real4(1))
        assert [tb.call("c", c.say, "draining") for c in conns] == first
        new = tb.call("c", lambda: [lbed.EchoConn(vip) for _ in range(30)])
        try:
            assert "b1" not in {tb.call("c", c.say, "new") for c in new}
        finally:
            for c in new:
                tb.call("c", c.close)
    finally:
        for c in conns:
            tb.call("c", c.close)


def test_a_failing_health_check_takes_the_real_out_within_fall_x_interval(
        bed: Any, lb: LoadBalancer) -> None:
    tb, b = bed
    vip = VIPS[("gue", 4)]
    key = f"{vip}:80/tcp"
    tb.call("lb", lb.remove_service, key)
    tb.call("lb", lb.add_service, key, "gue",
            health={"kind": "http", "interval": 0.2, "timeout": 0.2, "rise": 2, "fall": 2},
            reals=[{"address": lbed.real4(i)} for i in (1, 2, 3)])
    hc = HealthChecker(lb, call=lambda f, *a: tb.call("lb", f, *a))
    with hc:
        time.sleep(0.6)
        assert hc.changes == []
        b.stop_service(2)
        t0 = time.monotonic()
        try:
            while not hc.changes and time.monotonic() - t0 < 5:
                time.sleep(0.05)
            assert hc.changes and hc.changes[0][2:] == (lbed.real4(2), "down")
            took = hc.changes[0][0] - t0
            assert took <= 2 * 0.2 + 0.2 + 0.5, took     # fall x interval, + a round
            got = get(tb, vip, 30)
            assert "b2" not in got and set(got) == {"b1", "b3"}
        finally:
            b.start_service(2)
        t1 = time.monotonic()
        while len(hc.changes) < 2 and time.monotonic() - t1 < 5:
            time.sleep(0.05)
        assert hc.changes[1][2:] == (lbed.real4(2), "active")
        assert "b2" in set(get(tb, vip, 30))


def test_a_restarted_control_plane_keeps_balancing(bed: Any, lb: LoadBalancer) -> None:
    tb, _ = bed
    vip = VIPS[("dsr", 6)]
    conn = tb.call("c", lambda: lbed.EchoConn(VIPS[("ipip", 6)]))
    try:
        who = tb.call("c", conn.say, "before")
        tb.call("lb", lb.close)
        # another process changes the service: it finds the state and the pinned maps
        script = (f"from pyxdp.apps.lb import LoadBalancer\n"
                  f"lb = LoadBalancer.open({PIN!r}, state_root={STATE!r})\n"
                  f"lb.remove_real('[{vip}]:80/tcp', '{lbed.real6(1)}')\n"
                  f"print(len(lb.services()))\n")
        # (nsenter: the network namespace only; ip netns exec would also give it a mount
        # namespace of its own, without the pins)
        out = subprocess.run(["nsenter", f"--net=/run/netns/{tb.ns_name('lb')}",
                              sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "PYTHONPATH": str(SRC)})
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "8"
        assert tb.call("c", conn.say, "after") == who
        got = get(tb, vip, 20)
        assert set(got) == {"b2", "b3"}
    finally:
        tb.call("c", conn.close)
    again = tb.call("lb", LoadBalancer.open, PIN, state_root=STATE)
    try:
        svc = again.config().service(f"[{vip}]:80/tcp")
        assert [str(r.address) for r in svc.reals] == [lbed.real6(2), lbed.real6(3)]
    finally:
        tb.call("lb", again.close)


def test_bad_changes_are_refused_and_nothing_changes(bed: Any, lb: LoadBalancer) -> None:
    tb, _ = bed
    # a network behind a gateway (the client): reachable for ipip, not for dsr
    tb.exec("lb", ["ip", "route", "replace", "198.18.40.0/24", "via", lbed.CLIENT4])
    before = tb.call("lb", lambda: (lb.config().services, lb._state()))
    cases = [
        (lambda: lb.add_service("203.0.113.1:80/tcp"), "outside the allowed ranges"),
        (lambda: lb.add_service(f"{VIPS[('gue', 4)]}:80/tcp"), "exists already"),
        (lambda: lb.remove_real(f"{VIPS[('gue', 4)]}:80/tcp", "198.18.10.99"), "no real"),
        (lambda: lb.set_weight(f"{VIPS[('gue', 4)]}:80/tcp", lbed.real4(1), 0), "weight"),
        (lambda: lb.set_weight(f"{VIPS[('gue', 4)]}:80/tcp", lbed.real4(1), 70000),
         "weight"),
        (lambda: lb.add_real(f"{VIPS[('dsr', 4)]}:80/tcp", lbed.real6(1)), "IPv4 like"),
        (lambda: lb.add_real(f"{VIPS[('dsr', 4)]}:80/tcp", "198.18.30.5"), "no route"),
        (lambda: lb.add_real(f"{VIPS[('dsr', 4)]}:80/tcp", "198.18.40.5"),
         "dsr needs the real on-link"),
        (lambda: lb.add_service("198.18.100.77:80/sctp"), "proto"),
        (lambda: lb.add_service("198.18.100.77:80/tcp", "nat"), "method"),
        (lambda: lb.remove_service("198.18.100.78:80/tcp"), "no service"),
        (lambda: lb.add_service("198.18.100.77:http/tcp"), "VIP:PORT"),
    ]
    for fn, match in cases:
        with pytest.raises(LbError, match=match):
            tb.call("lb", fn)
    assert tb.call("lb", lambda: (lb.config().services, lb._state())) == before
    got = get(tb, VIPS[("gue", 4)], 6)
    assert set(got) <= NAMES
    # the same real is fine for a method that routes: ipip via the gateway
    tb.call("lb", lb.add_real, f"{VIPS[('ipip', 4)]}:80/tcp", "198.18.40.5")
    tb.exec("lb", ["ip", "route", "del", "198.18.40.0/24"])


def test_attach_refuses_bad_settings_and_leaves_nothing(bed: Any) -> None:
    tb, _ = bed
    tb.call("lb", LoadBalancer.force_detach, PIN, state_root=STATE)
    bad = [
        (settings(ring_size=1000), "prime"),
        (settings(ports=[]), "ports"),
        (settings(source4="2001:db8::1"), "IPv4"),
        (settings(service=[{"vip": "198.18.100.50", "port": 80, "method": "gue",
                            "reals": [{"address": lbed.real6(1)}]}], source6=None),
         "source6"),
        (settings(unknown=1), "unknown key"),
    ]
    for cfg, match in bad:
        if cfg.get("source6", 1) is None:
            del cfg["source6"]
        with pytest.raises(LbError, match=match):
            tb.call("lb", LoadBalancer.attach, cfg, pin_root=PIN, state_root=STATE)
        assert not tb.call("lb", lambda: __import__("pyxdp.xdp", fromlist=["status"]).status(
            "l0").attachments)


def test_cli_attach_change_save_restore_metrics_detach(bed: Any, tmp_path: Any) -> None:
    import json
    import urllib.request

    tb, _ = bed
    tb.call("lb", LoadBalancer.force_detach)
    cfg = tmp_path / "lb.toml"
    vip = VIPS[("ipip", 4)]
    cfg.write_text(f'ports = ["l0"]\nmode = "native"\nring_size = 1021\n'
                   f'source4 = "{lbed.LB4}"\nsource6 = "{lbed.LB6}"\n'
                   f'[[service]]\nvip = "{vip}"\nport = 80\nmethod = "ipip"\n'
                   f'reals = [{{ address = "{lbed.real4(1)}" }}]\n')
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    ns = tb.ns_name("lb")

    def cli(*argv: str, json_out: bool = True) -> Any:
        p = subprocess.run([sys.executable, "-m", "pyxdp", "lb", *argv, "--netns", ns,
                            *(["--json"] if json_out else [])], capture_output=True,
                           text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout) if json_out else p.stdout
    try:
        assert cli("attach", "--config", str(cfg))["services"] == 1
        assert cli("detach")["detached"]
        # interfaces on the command line, services added one by one
        assert cli("attach", "l0", "--mode", "native", "--source4", lbed.LB4, "--source6",
                   lbed.LB6, "--ring-size", "1021")["services"] == 0
        cli("service", "add", f"{vip}:80", "--proto", "tcp", "--method", "ipip")
        cli("real", "add", f"{vip}:80", lbed.real4(1), "--proto", "tcp")
        assert get(tb, vip, 5) == ["b1"] * 5
        cli("real", "add", f"{vip}:80", lbed.real4(2))
        cli("real", "weight", f"{vip}:80", lbed.real4(2), "--weight", "3")
        cli("service", "add", f"[{VIPS[('dsr', 6)]}]:80/tcp", "--method", "dsr")
        cli("real", "add", f"[{VIPS[('dsr', 6)]}]:80/tcp", lbed.real6(3))
        assert get(tb, VIPS[("dsr", 6)], 3) == ["b3"] * 3
        listed = {s["vip"]: s for s in cli("list")["services"]}
        assert [(r["address"], r["weight"]) for r in listed[vip]["reals"]] == [
            (lbed.real4(1), 1), (lbed.real4(2), 3)]
        cli("real", "drain", f"{vip}:80", lbed.real4(1))
        assert set(get(tb, vip, 10)) == {"b2"}
        saved = tmp_path / "saved.toml"
        cli("save", str(saved))
        cli("service", "del", f"[{VIPS[('dsr', 6)]}]:80/tcp")
        assert len(cli("list")["services"]) == 1
        cli("restore", str(saved))
        after = {s["vip"]: s for s in cli("list")["services"]}
        assert after == listed | {vip: {**listed[vip], "reals": [
            {**listed[vip]["reals"][0], "state": "draining"}, listed[vip]["reals"][1]]}}
        ipvs = tmp_path / "ipvs.txt"
        ipvs.write_text(f"-A -t {vip}:80 -s mh\n-a -t {vip}:80 -r {lbed.real4(3)}:80 -i -w 1\n")
        cli("restore", "--ipvsadm", str(ipvs))
        assert set(get(tb, vip, 6)) == {"b3"}
        st = cli("stats")
        assert st["reasons"]["forwarded"]["packets"] > 0
        assert st["services"][f"{vip}:80/tcp"]["reals"][lbed.real4(3)]["packets"] > 0
        p = subprocess.Popen([sys.executable, "-m", "pyxdp", "lb", "serve-metrics",
                              "--netns", ns, "--port", "9176", "--duration", "20"],
                             stdout=subprocess.PIPE, env=env)
        try:
            assert p.stdout is not None and b"serving" in p.stdout.readline()
            # (the exporter listens where the command runs; it reads the namespace's maps)
            body = urllib.request.urlopen("http://127.0.0.1:9176/metrics",
                                          timeout=5).read().decode()
            line = next(x for x in body.splitlines() if x.startswith(
                "pyxdp_lb_real_packets_total") and lbed.real4(3) in x)
            assert float(line.split()[-1]) > 0
            assert 'pyxdp_lb_packets_total{reason="forwarded"}' in body
        finally:
            p.terminate()
            p.wait(10)
        assert cli("detach")["detached"]
    finally:
        tb.call("lb", LoadBalancer.force_detach)


def test_quic_host_ids_follow_the_service_and_its_reals(bed: Any, lb: LoadBalancer) -> None:
    """The control plane keeps the data plane's QUIC table (service number << 16 | host
    id -> real slot) in step with the service: written with it, pruned with its reals,
    emptied with it."""
    tb, _ = bed
    key = "198.18.100.8:443/udp"
    tb.call("lb", lambda: lb.add_service(key, "ipip", quic=True, reals=[
        {"address": lbed.real4(1), "quic_id": 7}, {"address": lbed.real4(2), "quic_id": 9},
        {"address": lbed.real4(3)}]))

    def table() -> dict[int, str]:
        st = lb._state()
        num = st["nums"][key]
        by_slot = {v: k.split("|")[1] for k, v in st["slots"].items() if k.startswith(key)}
        return {k & 0xFFFF: by_slot[v] for k, v in lb._map("quic_ids").items()
                if k >> 16 == num}
    assert tb.call("lb", table) == {7: lbed.real4(1), 9: lbed.real4(2)}
    tb.call("lb", lb.remove_real, key, lbed.real4(1))
    assert tb.call("lb", table) == {9: lbed.real4(2)}
    saved = tb.call("lb", lambda: lb.config().service(key))
    assert saved.quic and [r.quic_id for r in saved.reals] == [9, 0]
    tb.call("lb", lb.remove_service, key)
    assert len(tb.call("lb", lambda: list(lb._map("quic_ids").keys()))) == 0
