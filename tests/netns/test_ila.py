"""``pyxdp ila`` end to end: a client, an ILA router and two locator hosts (IPv6 only, see
:mod:`pyxdp.apps.ila.bed`).  Real TCP connections to SIR addresses complete through the
router's translation and the host's translation back, in both checksum modes; the frames
between router and host are captured and their checksums checked by scapy for the ILA
address on the wire; a workload moves from host A to host B by one mapping change while
another workload's connection streams on; a 100k-mapping table replaced under traffic;
bad changes refused with nothing changed; the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyxdp.apps.ila import Ila, IlaError
from pyxdp.apps.ila import bed as ibed
from pyxdp.apps.router.bed import tcp_receive, tcp_send, tcp_server
from pyxdp.testbed import Testbed

pytestmark = pytest.mark.netns
SRC = Path(__file__).resolve().parents[2] / "src"
W5, W6 = "::1:0:0:5", "::1:0:0:6"
LA, LB = ibed.LOCATOR["a"], ibed.LOCATOR["b"]


@pytest.fixture(scope="module")
def tb() -> Iterator[Testbed]:
    with Testbed() as t:
        ibed.build(t)
        try:
            yield t
        finally:
            for ns in ("r", "a", "b"):
                t.call(ns, Ila.force_detach)


def attach(tb: Testbed, checksum: str, router_maps: Any, host_maps: dict[str, Any],
           host_checksum: str | None = None, unknown: str = "pass",
           default: str | None = None) -> None:
    for ns in ("r", "a", "b"):
        tb.call(ns, Ila.force_detach)
    sir = {"prefix": ibed.SIR, "checksum": checksum, "unknown": unknown}
    if default:
        sir["default_locator"] = default
    tb.call("r", lambda: Ila.attach(["r0"], "native", role="router", sirs=[sir],
                                    mappings=router_maps,
                                    locator_ranges=ibed.RANGES).close())
    for host, maps in host_maps.items():
        hs = {"prefix": ibed.SIR, "checksum": host_checksum or checksum}
        tb.call(host, lambda m=maps, h=hs, p=ibed.LINK[host][0]: Ila.attach(
            [p], "native", role="host", sirs=[h], mappings=m,
            locator_ranges=ibed.RANGES).close())


def app(tb: Testbed, ns: str, fn: Any) -> Any:
    def run() -> Any:
        a = Ila.open()
        try:
            return fn(a)
        finally:
            a.close()
    return tb.call(ns, run)


def transfer(tb: Testbed, host: str, addr: str, port: int, size: int = 200_000) -> None:
    ls = tb.call(host, tcp_server, addr, port)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(tcp_receive(ls)))
    t.start()
    data = os.urandom(size)
    try:
        tb.call("c", tcp_send, addr, port, data)
    finally:
        t.join(30)
    assert got == [(size, hashlib.sha256(data).hexdigest())]


def capture(tb: Testbed, ns: str, ifname: str) -> socket.socket:
    def open_() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))   # ETH_P_ALL: outgoing too
        s.bind((ifname, 0))
        s.settimeout(0.2)
        return s
    return tb.call(ns, open_)


def drain(s: socket.socket) -> list[bytes]:
    out = []
    with s:
        while True:
            try:
                out.append(s.recv(65536))
            except TimeoutError:
                return out


@pytest.mark.parametrize("checksum", ["neutral", "adjust"])
def test_tcp_to_a_sir_address_through_translation(tb: Testbed, checksum: str) -> None:
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6

    attach(tb, checksum, [(W5, LA)], {"a": [(W5, LA)]})
    addr = ibed.add_workload(tb, "a", W5)
    try:
        cap = capture(tb, "r", "ra")
        transfer(tb, "a", addr, 7000 if checksum == "neutral" else 7001)
        frames = drain(cap)
    finally:
        ibed.remove_workload(tb, "a", W5)
    r, a = app(tb, "r", lambda x: x.stats()), app(tb, "a", lambda x: x.stats())
    assert r["translated"][0] > 50 and a["translated"][0] == r["translated"][0]
    # the router's output to host A: the ILA address, and a checksum valid for it as it is
    to_a = [IPv6(f[14:]) for f in frames if f[12:14] == b"\x86\xdd" and f[38:46] == bytes.fromhex(
        "20010db8000a0001")]
    assert len(to_a) > 20
    for p in to_a:
        assert p.haslayer(TCP)
        sent = p[TCP].chksum
        del p[TCP].chksum
        assert IPv6(bytes(p))[TCP].chksum == sent         # scapy recomputes the same
        ident = socket.inet_pton(socket.AF_INET6, p.dst)[8:]
        if checksum == "neutral":     # C-bit set, the adjustment in the low 16 bits
            assert ident[:6] == bytes.fromhex("100100000000") and ident[6:] != b"\0\5"
        else:
            assert ident == socket.inet_pton(socket.AF_INET6, W5)[8:]


def test_the_receiving_stack_checks_transport_checksums(tb: Testbed) -> None:
    """The negative control: the router adjusts the TCP checksum for the ILA address but
    the host translates back without adjusting it again: the host's stack must refuse
    every segment (so the passing tests above are a real checksum check)."""
    attach(tb, "adjust", [(W5, LA)], {"a": [(W5, LA)]}, host_checksum="none")
    addr = ibed.add_workload(tb, "a", W5)
    try:
        def nstat() -> int:
            out = tb.exec("a", ["nstat", "-az", "TcpInCsumErrors"]).stdout
            return int(next(ln.split()[1] for ln in out.splitlines()
                            if ln.startswith("TcpInCsumErrors")))
        before = nstat()
        ls = tb.call("a", tcp_server, addr, 7010)
        with ls, pytest.raises(OSError):
            def connect() -> None:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect((addr, 7010))
            tb.call("c", connect)
        assert nstat() > before
    finally:
        ibed.remove_workload(tb, "a", W5)


def test_workload_moves_by_one_mapping_change(tb: Testbed) -> None:
    """W5 moves from host A to host B (one `move` on the router) while a connection to
    W6 on A streams on: that stream loses nothing; new connections to W5 reach B."""
    attach(tb, "neutral", [(W5, LA), (W6, LA)], {"a": [(W5, LA), (W6, LA)],
                                                 "b": [(W5, LB)]})
    a5, a6 = ibed.add_workload(tb, "a", W5), ibed.add_workload(tb, "a", W6)
    try:
        transfer(tb, "a", a5, 7020)
        ls = tb.call("a", tcp_server, a6, 7021)
        got: list[Any] = []
        rx = threading.Thread(target=lambda: got.append(tcp_receive(ls)))
        rx.start()
        h = hashlib.sha256()
        sent = [0]

        def stream() -> None:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.settimeout(20)
                s.connect((a6, 7021))
                end = time.monotonic() + 2.0
                while time.monotonic() < end:
                    chunk = os.urandom(16384)
                    s.sendall(chunk)
                    h.update(chunk)
                    sent[0] += len(chunk)
                    time.sleep(0.002)
        tx = threading.Thread(target=lambda: tb.call("c", stream))
        tx.start()
        time.sleep(0.5)
        # the move: W5's address leaves A, appears on B, one mapping change on the router
        ibed.remove_workload(tb, "a", W5)
        ibed.add_workload(tb, "b", W5)
        app(tb, "r", lambda x: x.move(W5, LB))
        tx.join(30)
        rx.join(30)
        assert got == [(sent[0], h.hexdigest())] and sent[0] > 100_000
        b_before = app(tb, "b", lambda x: x.stats()["translated"][0])
        transfer(tb, "b", a5, 7022)
        assert app(tb, "b", lambda x: x.stats()["translated"][0]) > b_before + 50
        rows = app(tb, "r", lambda x: x.mappings())
        assert {(m["identifier"], m["locator"]) for m in rows} == {(W5, LB), (W6, LA)}
    finally:
        ibed.remove_workload(tb, "a", W6)
        ibed.remove_workload(tb, "b", W5)


def test_100k_mappings_replace_the_table_under_traffic(tb: Testbed) -> None:
    attach(tb, "adjust", [(W6, LA)], {"a": [(W6, LA)]})
    a6 = ibed.add_workload(tb, "a", W6)
    try:
        big = [(f"::1:0:{(i >> 15) + 1:x}:{(i & 0x7FFF) + 1:x}", LB) for i in range(100_000)]
        done: list[int] = []
        t = threading.Thread(target=lambda: done.append(
            app(tb, "r", lambda x: x.set_mappings([(W6, LA), *big]))))
        t.start()
        transfer(tb, "a", a6, 7030, size=2_000_000)
        t.join(120)
        assert done == [100_001]
        assert len(app(tb, "r", lambda x: x.mappings())) == 100_001
        transfer(tb, "a", a6, 7031)              # still translated with the new table
    finally:
        ibed.remove_workload(tb, "a", W6)


def test_bad_changes_are_refused_and_nothing_changes(tb: Testbed, tmp_path: Path) -> None:
    attach(tb, "neutral", [(W5, LA)], {})
    before = app(tb, "r", lambda x: x.mappings())
    rows = [(f"::1:0:1:{i + 1:x}", LA) for i in range(1000)]
    bad = [*rows[:500], ("::1:0:1:9999", "2001:db8:ff::"), *rows[500:]]   # outside ranges
    with pytest.raises(IlaError, match="outside the locator ranges"):
        app(tb, "r", lambda x: x.set_mappings(bad))
    with pytest.raises(IlaError, match="mapped already"):
        app(tb, "r", lambda x: x.set_mappings([*rows, rows[3]]))
    with pytest.raises(IlaError, match="type 7 is reserved"):
        app(tb, "r", lambda x: x.add("::e000:0:0:1", LA))
    with pytest.raises(IlaError, match="C-bit"):
        app(tb, "r", lambda x: x.add("::1000:0:0:1", LA))
    with pytest.raises(IlaError, match="is a SIR prefix"):
        app(tb, "r", lambda x: x.add("::1:0:0:7", "2001:db8:1::"))
    f = tmp_path / "maps.txt"
    f.write_text("::1:0:0:8 2001:db8:a:1::\n::1:0:0:9 not-an-address\n")
    with pytest.raises(IlaError, match=r"maps.txt.*mapping #2"):
        app(tb, "r", lambda x: x.load_file(str(f)))
    f.write_text("::1:0:0:8 2001:db8:a:1:: 2001:db8:1::/64 extra\n")
    with pytest.raises(IlaError, match=r"maps.txt:1"):
        app(tb, "r", lambda x: x.load_file(str(f)))
    assert app(tb, "r", lambda x: x.mappings()) == before


def test_cli(tb: Testbed, tmp_path: Path) -> None:
    for ns in ("r", "a", "b"):
        tb.call(ns, Ila.force_detach)
    maps = tmp_path / "maps.txt"
    maps.write_text("# identifier locator\n::1:0:0:5 2001:db8:a:1::\n")
    cfg = tmp_path / "ila.toml"
    cfg.write_text('ports = ["r0"]\nrole = "router"\nmode = "native"\n'
                   'locator_ranges = ["2001:db8:a::/48"]\nmapping_file = "maps.txt"\n'
                   '[[sir]]\nprefix = "2001:db8:1::/64"\nchecksum = "adjust"\n')
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    ns = tb.ns_name("r")

    def cli(*argv: str) -> Any:
        p = subprocess.run([sys.executable, "-m", "pyxdp", "ila", *argv, "--netns", ns,
                            "--json"], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)
    try:
        assert cli("attach", "--config", str(cfg))["mappings"] == 1
        cli("map", "add", "::1:0:0:6", LB)
        cli("map", "move", "::1:0:0:5", LB)
        got = {(m["identifier"], m["locator"]) for m in cli("map", "list")["mappings"]}
        assert got == {("::1:0:0:5", LB), ("::1:0:0:6", LB)}
        cli("map", "del", "::1:0:0:6")
        maps.write_text("::1:0:0:7 2001:db8:a:1::\n::1:0:0:8 2001:db8:a:2::\n")
        assert cli("load", str(maps))["mappings"] == 2
        assert "translated" in cli("stats")["reasons"]
        assert cli("detach")
    finally:
        tb.call("r", Ila.force_detach)


def test_prometheus_metrics_read_the_pinned_counters(tb: Testbed) -> None:
    from prometheus_client import generate_latest

    from pyxdp.apps.ila.metrics import registry_for

    attach(tb, "adjust", [(W6, LA)], {"a": [(W6, LA)]})
    a6 = ibed.add_workload(tb, "a", W6)
    try:
        transfer(tb, "a", a6, 7040, size=50_000)
        n = app(tb, "r", lambda x: x.stats()["translated"][0])
        text = app(tb, "r", lambda x: generate_latest(registry_for(x)).decode())
        assert f'pyxdp_ila_packets_total{{reason="translated"}} {float(n)}' in text
        assert "pyxdp_ila_mappings 1.0" in text
    finally:
        ibed.remove_workload(tb, "a", W6)
