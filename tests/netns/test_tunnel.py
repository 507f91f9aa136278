"""``pyxdp tunnel`` end to end: two sites, each behind an XDP tunnel endpoint, joined only by
the tunnel (neither endpoint's kernel has a route to the other site).  For every protocol
and both underlay families a real TCP transfer crosses in both directions (the data checked
by its hash), with path-MTU discovery through the ICMP answers the endpoints generate in
XDP; the counters on both ends see it; the tunnel set is changed atomically under the
running app for each case.  Then the app's operator surface: bad changes refused with the
running set untouched, a restarted control plane, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyxdp.apps.router.bed import tcp_receive, tcp_send, tcp_server
from pyxdp.apps.tunnel import TunnelApp, TunnelConfig, TunnelError
from pyxdp.apps.tunnel import bed as tbed
from pyxdp.testbed import Testbed

pytestmark = pytest.mark.netns
SRC = Path(__file__).resolve().parents[2] / "src"


class Bed:
    def __init__(self, tb: Testbed) -> None:
        self.tb = tb
        tbed.build(tb)
        for ep in ("ta", "tb"):
            port = tbed.SITE[ep][2]
            cfg = TunnelConfig((port, tbed.UNDER[ep][0]), **tbed.settings(ep))
            tb.call(ep, lambda c=cfg: TunnelApp.attach(c).close())

    def app(self, ep: str, fn: Any) -> Any:
        def run() -> Any:
            t = TunnelApp.open()
            try:
                return fn(t)
            finally:
                t.close()
        return self.tb.call(ep, run)

    def transfer(self, src: str, dst_ip: str, size: int = 200_000, port: int = 7000) -> None:
        """A TCP transfer from host ``src`` to ``dst_ip`` (in the other site); asserts every
        byte arrived."""
        import hashlib
        dst = "b" if src == "a" else "a"
        ls = self.tb.call(dst, tcp_server, dst_ip, port)
        got: list[Any] = []
        t = threading.Thread(target=lambda: got.append(tcp_receive(ls)))
        t.start()
        data = os.urandom(size)
        try:
            self.tb.call(src, tcp_send, dst_ip, port, data)
        finally:
            t.join(30)
        assert got == [(size, hashlib.sha256(data).hexdigest())]


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    with Testbed() as tb:
        b = Bed(tb)
        try:
            yield b
        finally:
            for ep in ("ta", "tb"):
                tb.call(ep, TunnelApp.force_detach)


CASES = [("ipip", 4), ("ipip", 6), ("ip6ip", 4), ("ip6ip", 6), ("gue", 4), ("gue", 6),
         ("gre", 4), ("gre", 6), ("vxlan", 4), ("vxlan", 6), ("geneve", 4), ("geneve", 6),
         ("end.dx4", 6), ("end.dx6", 6)]


@pytest.mark.parametrize("protocol,outer", CASES, ids=[f"{p}-v{o}" for p, o in CASES])
def test_tcp_across_the_tunnel(bed: Bed, protocol: str, outer: int) -> None:
    extra = {"vni": 5} if protocol == "gre" and outer == 6 else {}
    if protocol == "gue" and outer == 6:
        extra["gue_variant"] = 1
    pair = tbed.tunnel_pair(protocol, outer, **extra)
    gens = {ep: bed.app(ep, lambda t, ep=ep: t.set_tunnels([pair[ep]])) for ep in pair}
    before = {ep: bed.app(ep, lambda t: t.stats()) for ep in pair}
    per0 = {ep: bed.app(ep, lambda t: t.tunnel_stats()) for ep in pair}
    routes = pair["ta"]["routes"]
    if any("." in r for r in routes):
        bed.transfer("a", tbed.host4("tb"))
        bed.transfer("b", tbed.host4("ta"), port=7001)
    if any(":" in r for r in routes):
        bed.transfer("a", tbed.host6("tb"), port=7002)
        bed.transfer("b", tbed.host6("ta"), port=7006)
    after = {ep: bed.app(ep, lambda t: t.stats()) for ep in pair}
    per = {ep: bed.app(ep, lambda t: t.tunnel_stats()) for ep in pair}
    for ep in pair:
        enc = after[ep]["encapsulated"][0] - before[ep]["encapsulated"][0]
        dec = after[ep]["decapsulated"][0] - before[ep]["decapsulated"][0]
        assert enc > 50 and dec > 50, (ep, enc, dec)
        name = pair[ep]["name"]        # the same name in every case: its counters go on
        assert per[ep][name][0] - per0[ep][name][0] == enc + dec
        assert gens[ep] >= 2


def test_path_mtu_discovered_through_xdp_icmp(bed: Bed) -> None:
    """A 1500-byte underlay: full-size TCP segments do not fit once encapsulated; the
    endpoint answers "fragmentation needed" in XDP and the sender's TCP shrinks."""
    pair = tbed.tunnel_pair("gue", 4)
    for ep in pair:
        bed.app(ep, lambda t, ep=ep: t.set_tunnels([pair[ep]]))
    before = bed.app("ta", lambda t: t.stats()["icmp_too_big_sent"][0])
    bed.tb.exec("a", ["ip", "route", "flush", "cache"])
    bed.transfer("a", tbed.host4("tb"), size=400_000, port=7003)
    assert bed.app("ta", lambda t: t.stats()["icmp_too_big_sent"][0]) > before
    out = bed.tb.exec("a", ["ip", "route", "get", tbed.host4("tb")]).stdout
    assert "mtu 1468" in out                                  # 1500 - 20 - 8 - 4


def test_bad_changes_are_refused_and_change_nothing(bed: Bed) -> None:
    pair = tbed.tunnel_pair("ipip", 4)
    bed.app("ta", lambda t: t.set_tunnels([pair["ta"]]))
    gen = bed.app("ta", lambda t: t.generation)
    bad = [
        ({**pair["ta"], "protocol": "l2tp"}, "unknown tunnel protocol 'l2tp'"),
        ({**pair["ta"], "protocol": "vxlan", "vni": 1 << 24}, "'vni' must be an integer"),
        ({**pair["ta"], "protocol": "vxlan"}, "needs a 'vni'"),
        ({**pair["ta"], "remote": "2001:db8:20::2"}, "different address families"),
        ({**pair["ta"], "action": "redirect:nope0", "protocol": "geneve", "vni": 1},
         "redirect interface 'nope0'"),
        ({**pair["ta"], "routes": ["198.18.30.1/24"]}, "host bits set"),
    ]
    for t, msg in bad:
        with pytest.raises(TunnelError, match=msg):
            bed.app("ta", lambda a, t=t: a.set_tunnels([t]))
    with pytest.raises(TunnelError, match="overlapping endpoints"):
        bed.app("ta", lambda a: a.set_tunnels([pair["ta"], {**pair["ta"], "name": "dup"}]))
    with pytest.raises(TunnelError, match="no tunnel named 'ghost'"):
        bed.app("ta", lambda a: a.remove("ghost"))
    assert bed.app("ta", lambda t: (t.generation, [x.name for x in t.tunnels])) == (
        gen, [pair["ta"]["name"]])
    for ep in pair:
        bed.app(ep, lambda t, ep=ep: t.set_tunnels([pair[ep]]))
    bed.transfer("a", tbed.host4("tb"), size=50_000, port=7004)     # still carrying traffic


def test_allow_list_and_malformed_frames_on_the_wire(bed: Bed) -> None:
    """Frames sent onto the underlay link to the attached endpoint: GRE from the configured
    remote is decapsulated and delivered to host a; the same from an unknown endpoint, and
    frames whose outer headers are cut short, are left to the stack and counted."""
    import socket as so

    from scapy.layers.inet import GRE, IP, UDP
    from scapy.layers.l2 import Ether

    pair = tbed.tunnel_pair("gre", 4)
    for ep in pair:
        bed.app(ep, lambda t, ep=ep: t.set_tunnels([pair[ep]]))

    def gre(src: str, payload: bytes) -> bytes:
        inner = IP(src=tbed.host4("tb"), dst=tbed.host4("ta")) / UDP(sport=5000,
                                                                     dport=7050) / payload
        return bytes(Ether(src=tbed.MAC["tb1"], dst=tbed.MAC["ta1"])
                     / IP(src=src, dst="198.18.20.1") / GRE() / inner)

    def listen() -> so.socket:
        s = so.socket(so.AF_INET, so.SOCK_DGRAM)
        s.bind((tbed.host4("ta"), 7050))
        s.settimeout(0.5)
        return s

    def send(frames: list[bytes]) -> None:
        with so.socket(so.AF_PACKET, so.SOCK_RAW) as s:
            s.bind(("tb1", 0))
            for f in frames:
                s.send(f)

    good = gre("198.18.20.2", b"from the remote")
    cut = [good[:14 + 20 + 2], good[:14 + 20 + 4 + 10], good[:14 + 12]]
    before = bed.app("ta", lambda t: t.stats())
    rx = bed.tb.call("a", listen)
    with rx:
        bed.tb.call("tb", send, [gre("198.18.20.9", b"from a stranger"), *cut, good])
        got = []
        try:
            while True:
                got.append(rx.recv(100))
        except TimeoutError:
            pass
    after = bed.app("ta", lambda t: t.stats())
    d = {k: after[k][0] - before[k][0] for k in after}
    assert got == [b"from the remote"]                 # the stranger's frame never arrives
    assert d["pass_unknown_endpoint"] == 1
    assert d["pass_malformed"] >= 2 and d["decapsulated"] == 1, d


def cli(bed: Bed, ep: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyxdp", "tunnel", *argv, "--netns",
                           bed.tb.ns_name(ep)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SRC)})


def test_cli_list_apply_add_remove_stats(bed: Bed, tmp_path: Path) -> None:
    pair = tbed.tunnel_pair("gre", 4)
    conf = tmp_path / "ta.toml"
    t = pair["ta"]
    conf.write_text("icmp_source4 = '198.18.10.1'\nicmp_source6 = '2001:db8:10::1'\n"
                    "[[tunnel]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in t.items()))
    r = cli(bed, "ta", "apply", str(conf), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tunnels"] == [t["name"]]
    bed.app("tb", lambda a: a.set_tunnels([pair["tb"]]))
    bed.transfer("a", tbed.host4("tb"), size=50_000, port=7005)
    r = cli(bed, "ta", "list", "--json")
    rows = json.loads(r.stdout)["tunnels"]
    assert rows[0]["protocol"] == "gre" and rows[0]["packets"] > 0
    r = cli(bed, "ta", "add", 'name="extra"', 'protocol="ipip"', 'local="198.18.20.1"',
            'remote="198.18.20.9"', "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["tunnels"] == [t["name"], "extra"]
    r = cli(bed, "ta", "stats", "--json")
    d = json.loads(r.stdout)
    assert d["tunnels"][t["name"]]["packets"] == rows[0]["packets"]   # kept across changes
    assert d["tunnels"]["extra"]["packets"] == 0 and d["reasons"]["encapsulated"]["packets"] > 0
    r = cli(bed, "ta", "remove", "extra")
    assert r.returncode == 0 and "removed 'extra'" in r.stdout
    conf.write_text(conf.read_text().replace("198.18.10.1", "198.18.10.9"))
    r = cli(bed, "ta", "apply", str(conf))
    assert r.returncode == 1 and "settings differ" in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[[tunnel]]\nname = 'x'\nprotocol = 'gre'\nlocal = '198.18.20.1'\n"
                   "remote = '198.18.20.2'\nbogus = 1\n")
    r = cli(bed, "ta", "apply", str(bad))
    assert r.returncode == 1 and "unknown key(s) bogus" in r.stderr
    r = cli(bed, "ta", "stats")
    assert r.returncode == 0 and "tunnel " + t["name"] in r.stdout


def test_prometheus_metrics_read_the_pinned_counters(bed: Bed) -> None:
    from prometheus_client import generate_latest

    from pyxdp.apps.tunnel.metrics import registry_for

    pair = tbed.tunnel_pair("gre", 4)
    for ep in pair:
        bed.app(ep, lambda t, ep=ep: t.set_tunnels([pair[ep]]))
    bed.transfer("a", tbed.host4("tb"), size=50_000, port=7060)
    stats, per, text = bed.app("ta", lambda t: (t.stats(), t.tunnel_stats(),
                                                generate_latest(registry_for(t)).decode()))
    enc = stats["encapsulated"][0]
    assert enc > 0
    assert f'pyxdp_tunnel_packets_total{{reason="encapsulated"}} {float(enc)}' in text
    name = pair["ta"]["name"]
    assert (f'pyxdp_tunnel_tunnel_packets_total{{tunnel="{name}"}} {float(per[name][0])}'
            in text)
    assert "pyxdp_tunnel_generation " in text
