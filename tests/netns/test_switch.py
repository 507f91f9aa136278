"""``pyxdp switch`` end to end on three hosts around one switch namespace: ping and TCP
across it for IPv4 and IPv6, learning and forwarding (counters), a MAC moving between
ports, flooding that excludes the ingress port, 802.1Q membership with raw tagged frames,
static entries and flush, aging, reopen, and refusals."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from pyxdp.apps._ports import netns_inode
from pyxdp.apps.router import bed as rbed
from pyxdp.apps.switch import PortVlans, Switch, SwitchError, bed
from pyxdp.testbed import Testbed

pytestmark = pytest.mark.netns

BCAST = b"\xff" * 6


@pytest.fixture
def sbed() -> Iterator[Testbed]:
    with Testbed() as tb:
        bed.build(tb)
        yield tb


@pytest.fixture
def qbed() -> Iterator[Testbed]:
    """The bed with IPv6 off on the hosts: only the test's own frames cross the switch."""
    with Testbed() as tb:
        bed.build(tb, ipv6=False)
        yield tb


def attach(tb: Testbed, *args: Any, **kw: Any) -> Switch:
    return tb.call(bed.SWITCH_NS, lambda: Switch.attach(*args, **kw))


def _switch(tb: Testbed) -> Iterator[Switch]:
    s = attach(tb, bed.PORTS, "native")
    try:
        yield s
    finally:
        s.close()
        tb.call(bed.SWITCH_NS, lambda: Switch.force_detach())


@pytest.fixture
def switch(sbed: Testbed) -> Iterator[Switch]:
    yield from _switch(sbed)


@pytest.fixture
def qswitch(qbed: Testbed) -> Iterator[Switch]:
    yield from _switch(qbed)


def stat(tb: Testbed, s: Switch, name: str) -> int:
    return tb.call(bed.SWITCH_NS, s.stats)[name][0]


def port(tb: Testbed, s: Switch, name: str, key: str) -> int:
    return tb.call(bed.SWITCH_NS, s.port_stats)[name][key]


def fdb(tb: Testbed, s: Switch) -> dict[tuple[str, int], str]:
    return {(r.mac, r.vlan): r.port for r in tb.call(bed.SWITCH_NS, s.fdb)}


def raw(dst: bytes, src: str, payload: bytes, vlan: int | None = None,
        ethertype: int = 0x88B5) -> bytes:
    """A frame of the local experimental ethertype (no stack answers it)."""
    s = bytes.fromhex(src.replace(":", ""))
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    body = payload + b"\0" * max(0, 46 - len(payload))
    return dst + s + tag + struct.pack("!H", ethertype) + body


def captures(tb: Testbed) -> dict[str, Any]:
    return {ns: tb.call(ns, bed.Capture, iface) for ns, (iface, _, _) in bed.HOSTS.items()}


def received(tb: Testbed, caps: dict[str, Any], marker: bytes) -> dict[str, list[bytes]]:
    try:
        return {ns: tb.call(ns, c.frames, 0.5, marker) for ns, c in caps.items()}
    finally:
        for ns, c in caps.items():
            tb.call(ns, c.close)


@pytest.mark.parametrize("dst", [bed.v4(2), bed.v6(2)])
def test_ping_and_tcp_across_the_switch(sbed: Testbed, switch: Switch, dst: str) -> None:
    answers = sbed.call("h0", rbed.ping, dst, count=4)
    assert len(answers) == 4 and all(a.is_reply for a in answers)
    table = fdb(sbed, switch)
    assert table[(bed.mac(1), 0)] == "p0" and table[(bed.mac(2), 0)] == "p1"
    before = stat(sbed, switch, "forwarded")
    data = os.urandom(3_000_000)
    listener = sbed.call("h1", rbed.tcp_server, dst, 5002)
    got = sbed.thread("h1").submit(rbed.tcp_receive, listener)
    sbed.call("h0", rbed.tcp_send, dst, 5002, data)
    ok, (n, digest) = got.get(timeout=60)
    assert ok and n == len(data) and digest == hashlib.sha256(data).hexdigest()
    # the transfer went through XDP: thousands of frames switched, none through h2's port
    assert stat(sbed, switch, "forwarded") - before > 1000
    assert port(sbed, switch, "p1", "tx_packets") > 1000
    assert port(sbed, switch, "p0", "rx_packets") > 1000


def test_flooding_excludes_the_ingress_port(qbed: Testbed, qswitch: Switch) -> None:
    sbed, switch = qbed, qswitch
    caps = captures(sbed)
    tx0 = {p: port(sbed, switch, p, "tx_packets") for p in bed.PORTS}
    marker = os.urandom(8)
    sbed.call("h0", bed.send_frame, "e0", raw(BCAST, bed.mac(1), marker))
    got = received(sbed, caps, marker)
    assert len(got["h1"]) == 1 and len(got["h2"]) == 1
    assert got["h0"] == []                       # not sent back where it came from
    tx = {p: port(sbed, switch, p, "tx_packets") for p in bed.PORTS}
    assert tx["p0"] == tx0["p0"] and tx["p1"] == tx0["p1"] + 1 and tx["p2"] == tx0["p2"] + 1
    assert stat(sbed, switch, "flooded_multicast") >= 1
    # an unknown unicast destination floods too, then a learned one does not
    unknown = "02:5e:00:00:99:99"
    caps = captures(sbed)
    m2 = os.urandom(8)
    sbed.call("h0", bed.send_frame, "e0", raw(bytes.fromhex(unknown.replace(":", "")),
                                               bed.mac(1), m2))
    got = received(sbed, caps, m2)
    assert [len(got[h]) for h in ("h0", "h1", "h2")] == [0, 1, 1]
    sbed.call("h2", bed.send_frame, "e2", raw(BCAST, unknown, os.urandom(8)))  # learn it
    caps = captures(sbed)
    m3 = os.urandom(8)
    sbed.call("h0", bed.send_frame, "e0", raw(bytes.fromhex(unknown.replace(":", "")),
                                               bed.mac(1), m3))
    got = received(sbed, caps, m3)
    assert [len(got[h]) for h in ("h0", "h1", "h2")] == [0, 0, 1]


def test_a_mac_moves_between_ports(qbed: Testbed, qswitch: Switch) -> None:
    sbed, switch = qbed, qswitch
    assert len(sbed.call("h0", rbed.ping, bed.v4(2), count=2)) == 2
    assert fdb(sbed, switch)[(bed.mac(1), 0)] == "p0"
    moved = stat(sbed, switch, "moved")
    # h0's MAC now speaks from h2's port: the entry follows it at once
    sbed.call("h2", bed.send_frame, "e2", raw(BCAST, bed.mac(1), b"moved"))
    assert fdb(sbed, switch)[(bed.mac(1), 0)] == "p2"
    assert stat(sbed, switch, "moved") == moved + 1
    # frames for h0's MAC now go to p2 only
    caps = captures(sbed)
    marker = os.urandom(8)
    sbed.call("h1", bed.send_frame, "e1", raw(bytes.fromhex(bed.mac(1).replace(":", "")),
                                               bed.mac(2), marker))
    got = received(sbed, caps, marker)
    assert [len(got[h]) for h in ("h0", "h1", "h2")] == [0, 0, 1]
    # and back when h0 speaks again
    assert len(sbed.call("h0", rbed.ping, bed.v4(2), count=2)) == 2
    assert fdb(sbed, switch)[(bed.mac(1), 0)] == "p0"
    assert stat(sbed, switch, "moved") == moved + 2


def test_static_entry_does_not_move_and_flush_forgets(sbed: Testbed, switch: Switch) -> None:
    other = "02:5e:00:00:77:77"
    sbed.call(bed.SWITCH_NS, switch.add_static, other, "p1")
    sbed.call("h2", bed.send_frame, "e2", raw(BCAST, other, b"spoof"))
    rows = {r.mac: r for r in sbed.call(bed.SWITCH_NS, switch.fdb)}
    assert rows[other].port == "p1" and rows[other].static
    assert len(sbed.call("h0", rbed.ping, bed.v4(2), count=1)) == 1
    assert sbed.call(bed.SWITCH_NS, switch.flush) >= 2      # h0 and h1 learned
    rows = {r.mac: r for r in sbed.call(bed.SWITCH_NS, switch.fdb)}
    assert list(rows) == [other]
    assert sbed.call(bed.SWITCH_NS, switch.remove, other) is True
    assert sbed.call(bed.SWITCH_NS, switch.remove, other) is False
    with pytest.raises(SwitchError, match="not a port"):
        sbed.call(bed.SWITCH_NS, switch.add_static, other, "e9")
    with pytest.raises(SwitchError, match="not a MAC"):
        sbed.call(bed.SWITCH_NS, switch.add_static, "02:5e:00", "p1")
    with pytest.raises(SwitchError, match="multicast"):
        sbed.call(bed.SWITCH_NS, switch.add_static, "01:00:5e:00:00:01", "p1")


def test_aged_entries_flood_again(sbed: Testbed) -> None:
    s = attach(sbed, bed.PORTS, "native", age_s=0.5)
    try:
        assert len(sbed.call("h0", rbed.ping, bed.v4(2), count=1)) == 1
        unknown = stat(sbed, s, "flooded_unknown")
        time.sleep(1.2)            # h1's entry is older than the aging time now
        caps = captures(sbed)
        marker = os.urandom(8)
        sbed.call("h0", bed.send_frame, "e0", raw(bytes.fromhex(bed.mac(2).replace(":", "")),
                                                   bed.mac(1), marker))
        got = received(sbed, caps, marker)
        assert [len(got[h]) for h in ("h0", "h1", "h2")] == [0, 1, 1]
        assert stat(sbed, s, "flooded_unknown") == unknown + 1
    finally:
        s.close()
        sbed.call(bed.SWITCH_NS, lambda: Switch.force_detach())


def test_vlans_membership_push_and_pop(qbed: Testbed) -> None:
    """p0: access VLAN 10; p1: trunk, VLANs 10 and 20 tagged; p2: access VLAN 20."""
    vl = {"p0": PortVlans(pvid=10), "p1": PortVlans(pvid=0, tagged=(10, 20)),
          "p2": PortVlans(pvid=20)}
    sbed = qbed
    s = attach(sbed, bed.PORTS, "native", vlans=vl)
    try:
        # untagged broadcast from the VLAN 10 access port: tagged 10 on the trunk only
        caps = captures(sbed)
        m1 = os.urandom(8)
        sbed.call("h0", bed.send_frame, "e0", raw(BCAST, bed.mac(1), m1))
        got = received(sbed, caps, m1)
        assert got["h0"] == [] and got["h2"] == []
        assert len(got["h1"]) == 1 and got["h1"][0][12:16] == struct.pack("!HH", 0x8100, 10)
        # tagged VLAN 20 from the trunk: untagged on p2 only
        caps = captures(sbed)
        m2 = os.urandom(8)
        sbed.call("h1", bed.send_frame, "e1", raw(BCAST, bed.mac(2), m2, vlan=20))
        got = received(sbed, caps, m2)
        assert got["h0"] == [] and got["h1"] == []
        assert len(got["h2"]) == 1 and got["h2"][0][12:14] == b"\x88\xb5"
        # learned per VLAN: h1's MAC is known in VLAN 20, h0's in VLAN 10
        table = fdb(sbed, s)
        assert table[(bed.mac(2), 20)] == "p1" and table[(bed.mac(1), 10)] == "p0"
        # a VLAN the trunk does not carry is dropped on ingress
        before = stat(sbed, s, "drop_vlan_ingress")
        caps = captures(sbed)
        m3 = os.urandom(8)
        sbed.call("h1", bed.send_frame, "e1", raw(BCAST, bed.mac(2), m3, vlan=30))
        got = received(sbed, caps, m3)
        assert all(v == [] for v in got.values())
        assert stat(sbed, s, "drop_vlan_ingress") == before + 1
        # unicast h2 -> h1 (known in VLAN 20 on the trunk) leaves tagged 20
        caps = captures(sbed)
        m4 = os.urandom(8)
        sbed.call("h2", bed.send_frame, "e2", raw(bytes.fromhex(bed.mac(2).replace(":", "")),
                                                   bed.mac(3), m4))
        got = received(sbed, caps, m4)
        assert got["h0"] == [] and got["h2"] == []
        assert [f[12:16] for f in got["h1"]] == [struct.pack("!HH", 0x8100, 20)]
        # flooded copies that a port's VLAN does not carry are dropped at its egress
        assert stat(sbed, s, "drop_vlan_egress") >= 2
    finally:
        s.close()
        sbed.call(bed.SWITCH_NS, lambda: Switch.force_detach())


def test_reopen_by_a_new_control_plane_and_detach(sbed: Testbed, switch: Switch) -> None:
    assert len(sbed.call("h0", rbed.ping, bed.v6(3), count=1)) == 1
    again = sbed.call(bed.SWITCH_NS, Switch.open)
    try:
        assert [p.name for p in again.ports] == bed.PORTS
        assert sbed.call(bed.SWITCH_NS, again.stats)["forwarded"][0] >= 1
        assert set(sbed.call(bed.SWITCH_NS, again.program_ids).values()) != {0}
        with pytest.raises(SwitchError, match="already has a pyxdp switch"):
            attach(sbed, bed.PORTS)
        done = sbed.call(bed.SWITCH_NS, again.detach)
        assert sorted(d for d in done if d.startswith("detached")) == [
            f"detached {p}" for p in bed.PORTS]
    finally:
        again.close()
    with pytest.raises(SwitchError, match="no pyxdp switch"):
        sbed.call(bed.SWITCH_NS, Switch.open)
    # the hosts still reach each other through the stack? no: the ports are not bridged
    # by the kernel, so without the switch nothing passes
    assert sbed.call("h0", rbed.ping, bed.v4(2), count=1, timeout=0.5) == []


def test_bad_ports_are_refused(sbed: Testbed) -> None:
    with pytest.raises(SwitchError, match="duplicate port 'p0': given twice"):
        attach(sbed, ["p0", "p1", "p0"])
    with pytest.raises(SwitchError, match="'e0'.*network namespace"):
        attach(sbed, ["p0", "e0"])                    # e0 lives in h0's namespace
    with pytest.raises(SwitchError, match="one or more"):
        attach(sbed, [])
    with pytest.raises(SwitchError, match="loopback"):
        attach(sbed, ["p0", "lo"])
    sbed.exec(bed.SWITCH_NS, ["ip", "link", "add", "br9", "type", "bridge"])
    with pytest.raises(SwitchError, match="'br9' \\(bridge\\) has no native XDP support"):
        attach(sbed, ["p0", "br9"], "native")
    sbed.set_gro("h2", "e2", False)
    with pytest.raises(SwitchError, match="'p2' cannot transmit frames the switch"
                                          " redirects.*GRO on"):
        attach(sbed, bed.PORTS)
    sbed.set_gro("h2", "e2", True)
    with pytest.raises(SwitchError, match="not a port of the switch"):
        attach(sbed, ["p0", "p1"], vlans={"p2": PortVlans(pvid=5)})
    with pytest.raises(ValueError, match="out of range"):
        PortVlans(pvid=4095)
    with pytest.raises(ValueError, match="PVID"):
        PortVlans(pvid=5, tagged=(5,))
    sbed.exec(bed.SWITCH_NS, ["ip", "link", "set", "p2", "mtu", "1400"])
    with pytest.raises(SwitchError, match="MTU mismatch"):
        attach(sbed, bed.PORTS)
    # nothing was left behind by the refusals
    ino = sbed.call(bed.SWITCH_NS, netns_inode)
    assert not os.path.exists(os.path.join(Switch.STATE_ROOT, f"netns{ino}", "state.json"))
    assert not os.path.exists(os.path.join(Switch.PIN_ROOT, f"netns{ino}"))
    s = attach(sbed, bed.PORTS, allow_mtu_mismatch=True)
    s.close()
    sbed.call(bed.SWITCH_NS, lambda: Switch.force_detach())


def _cli(tb: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "src")}
    return subprocess.run([sys.executable, "-m", "pyxdp", "switch", *args, "--netns",
                           tb.ns_name(bed.SWITCH_NS)], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_config_vlans_static_stats_fdb_metrics_detach(qbed: Testbed,
                                                          tmp_path: Any) -> None:
    cfg = tmp_path / "switch.toml"
    cfg.write_text('ports = ["p0", "p1", "p2"]\nmode = "native"\nage = 120\n'
                   '[vlans.p0]\npvid = 10\n[vlans.p1]\npvid = 10\n[vlans.p2]\npvid = 20\n'
                   '[[static]]\nmac = "02:5e:00:00:10:09"\nport = "p2"\nvlan = 20\n')
    p = _cli(qbed, "attach", "--config", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert set(d["prog_ids"]) == set(bed.PORTS) and d["vlans"] and d["static"] == 1
    try:
        # h0 and h1 share VLAN 10 (untagged on both): they ping; h2 (VLAN 20) is apart
        assert len(qbed.call("h0", rbed.ping, bed.v4(2), count=3)) == 3
        assert qbed.call("h0", rbed.ping, bed.v4(3), count=1, timeout=0.5) == []
        p = _cli(qbed, "fdb", "--json")
        assert p.returncode == 0, p.stderr
        rows = {(r["mac"], r["vlan"]): r for r in json.loads(p.stdout)}
        assert rows[(bed.mac(1), 10)]["port"] == "p0"
        assert rows[("02:5e:00:00:10:09", 20)]["static"] is True
        p = _cli(qbed, "stats", "--json")
        assert p.returncode == 0, p.stderr
        st = json.loads(p.stdout)
        assert st["reasons"]["forwarded"]["packets"] >= 4
        assert st["port_stats"]["p1"]["tx_packets"] >= 3
        assert st["reasons"]["drop_vlan_egress"]["packets"] >= 1   # h0's ARP at p2
        p = _cli(qbed, "stats")
        assert p.returncode == 0 and "p1 tx" in p.stdout and "fdb entries" in p.stdout
        p = _cli(qbed, "static", "02:5e:00:00:10:0a", "p1", "--vlan", "10")
        assert p.returncode == 0, p.stderr
        p = _cli(qbed, "forget", "02:5e:00:00:10:0a", "--vlan", "10")
        assert p.returncode == 0 and "forgotten" in p.stdout
        p = _cli(qbed, "forget", "02:5e:00:00:10:0a", "--vlan", "10")
        assert p.returncode == 1 and "was not known" in p.stdout
        p = _cli(qbed, "static", "02:5e:00:00:10:0a", "p1")     # VLANs on: VLAN 0 refused
        assert p.returncode == 1 and "give the entry's VLAN" in p.stderr
        srv = subprocess.Popen([sys.executable, "-m", "pyxdp", "switch", "serve-metrics",
                                "--netns", qbed.ns_name(bed.SWITCH_NS), "--port", "19468",
                                "--duration", "20"], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.path.join(
                                   os.path.dirname(__file__), "..", "..", "src")})
        try:
            assert srv.stdout is not None
            srv.stdout.readline()
            body = urllib.request.urlopen("http://127.0.0.1:19468/metrics", timeout=10
                                          ).read().decode()
        finally:
            srv.terminate()
            srv.wait(timeout=10)
        line = [x for x in body.splitlines()
                if x.startswith('pyxdp_switch_port_tx_packets_total{iface="p1"}')]
        assert line and float(line[0].split()[-1]) >= 3
        assert "pyxdp_switch_fdb_entries" in body
        p = _cli(qbed, "flush", "--json")
        assert p.returncode == 0 and json.loads(p.stdout)["removed"] >= 2
        p = _cli(qbed, "fdb", "--json")
        # the static entry stays; a learned one is back only if its host spoke since
        left = json.loads(p.stdout)
        assert [r["mac"] for r in left if r["static"]] == ["02:5e:00:00:10:09"]
        assert all(r["age_s"] < 5 for r in left if not r["static"])
    finally:
        p = _cli(qbed, "detach")
    assert p.returncode == 0 and "switch detached" in p.stdout
    p = _cli(qbed, "stats")
    assert p.returncode == 1 and "no pyxdp switch" in p.stderr


def test_cli_bad_config(qbed: Testbed, tmp_path: Any) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('ports = ["p0"]\n[vlans.p7]\npvid = 3\n')
    p = _cli(qbed, "attach", "--config", str(cfg))
    assert p.returncode == 1 and "'p7' is not in 'ports'" in p.stderr
    p = _cli(qbed, "attach")
    assert p.returncode == 2 and "one or more interfaces" in p.stderr
    p = _cli(qbed, "attach", "p0", "--age", "0")
    assert p.returncode == 2
