"""``pyxdp fleet`` end to end: a real 3-member etcd cluster with TLS client certificates
and a role per host, in its own namespace of the test bed; three host namespaces, each with
an agent process (``pyxdp agent``, reaching etcd over the bed) and a filter on the veth its
sender namespace talks to.  Real UDP packets show each policy taking effect."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyxdp.fleet import store
from pyxdp.fleet.cluster import Cluster, make_pki
from pyxdp.fleet.etcd import Client, Compacted, PermissionDenied, wait_ready
from pyxdp.testbed import Testbed

pytestmark = pytest.mark.netns

HOSTS = ["edge-0", "edge-1", "edge-2"]
ETCD_IPS = ["198.18.100.1", "198.18.100.2", "198.18.100.3"]
SRC = Path(__file__).resolve().parents[2] / "src"


def deny(*ports: int) -> str:
    return "".join(f'[[rule]]\nname = "udp{p}"\nproto = "udp"\ndport = ["{p}"]\n'
                   for p in ports)


class Fleet:
    def __init__(self, tb: Testbed, tmp: Path) -> None:
        self.tb, self.tmp = tb, tmp
        tb.namespace("core")
        tb.exec("core", ["ip", "link", "set", "lo", "up"])
        for ip in ETCD_IPS:
            tb.exec("core", ["ip", "addr", "add", f"{ip}/32", "dev", "lo"])
        for i in range(len(HOSTS)):
            tb.namespace(f"h{i}")
            tb.namespace(f"s{i}")
            tb.veth(f"h{i}", "up", "core", f"h{i}",
                    ipv4=(f"198.18.{110 + i}.2/24", f"198.18.{110 + i}.1/24"))
            tb.exec(f"h{i}", ["ip", "route", "add", "198.18.100.0/24", "via",
                              f"198.18.{110 + i}.1"])
            tb.veth(f"s{i}", "out", f"h{i}", "eth0",
                    ipv4=(f"198.18.{120 + i}.2/24", f"198.18.{120 + i}.1/24"))
        self.pki = make_pki(str(tmp / "pki"), ["root", *HOSTS], ETCD_IPS)
        full = tb.ns_name("core")
        self.cluster = Cluster(3, pki=self.pki, hosts=ETCD_IPS, netns=["core"] * 3,
                               exec_in=lambda _ns, argv: ["ip", "netns", "exec", full, *argv])
        self.agents: dict[str, subprocess.Popen[str]] = {}

    def client(self, who: str = "root") -> Client:
        # the test process reaches the members from the core namespace's thread
        return Client(self.cluster.endpoints, tls=self.pki.tls(who), user=who,
                      password=f"pw-{who}")

    def in_core(self, fn: Any, *a: Any) -> Any:
        return self.tb.call("core", fn, *a)

    def start(self) -> None:
        self.cluster.start()
        bare = Client(self.cluster.endpoints, tls=self.pki.tls("root"))
        self.in_core(wait_ready, bare, 30)
        self.in_core(store.init_auth, bare, "pw-root")
        admin = self.client()
        for h in HOSTS:
            self.in_core(store.provision_host, admin, h, f"pw-{h}")
            (self.tmp / f"{h}.pw").write_text(f"pw-{h}\n")

    def start_agent(self, i: int) -> None:
        h = HOSTS[i]
        argv = [sys.executable, "-m", "pyxdp", "agent", "--host", h, "--iface", "eth0",
                "--netns", self.tb.ns_name(f"h{i}"), "--lease-ttl", "2",
                "--etcd", ",".join(self.cluster.endpoints), "--ca", self.pki.ca,
                "--cert", self.pki.clients[h][0], "--key", self.pki.clients[h][1],
                "--user", h, "--password-file", str(self.tmp / f"{h}.pw")]
        log = open(self.tmp / f"{h}.log", "a")  # noqa: SIM115 (the agent's lifetime)
        self.agents[h] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                          text=True, env={**os.environ,
                                                          "PYTHONPATH": str(SRC)})
        log.close()

    def stop_agent(self, h: str, sig: int = signal.SIGTERM) -> None:
        p = self.agents.pop(h, None)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

    def push(self, text: str, *, check: bool = True, timeout: float = 60) -> store.Rollout:
        c = self.client()

        def go() -> store.Rollout:
            v = store.write_policy(c, "edge", text, check=check)
            return store.push(c, "edge", v, "edge-*", canary=0.3, timeout=timeout)

        return self.in_core(go)

    def delivered(self, i: int, port: int, n: int = 5) -> int:
        """UDP datagrams from s<i> that reach h<i>'s socket on ``port``."""
        dst = f"198.18.{120 + i}.1"
        rx = self.tb.call(f"h{i}", _bound, dst, port)
        try:
            def send() -> None:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    for _ in range(n):
                        s.sendto(b"x" * 32, (dst, port))
            self.tb.call(f"s{i}", send)
            return int(self.tb.call(f"h{i}", _drain, rx))
        finally:
            rx.close()

    def close(self) -> None:
        for h in list(self.agents):
            self.stop_agent(h)
        self.cluster.close()
        from pyxdp.apps.filter import Filter
        for i in range(len(HOSTS)):
            with contextlib.suppress(Exception):
                self.tb.call(f"h{i}", Filter.force_detach, "eth0")


def _bound(addr: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    s.settimeout(0.3)
    return s


def _drain(s: socket.socket) -> int:
    n = 0
    try:
        while True:
            s.recv(2048)
            n += 1
    except TimeoutError:
        return n


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with Testbed() as tb:
        f = Fleet(tb, tmp_path)
        try:
            f.start()
            for i in range(len(HOSTS)):
                f.start_agent(i)
            yield f
        finally:
            f.close()


def test_push_member_down_bad_policy_and_roles(fleet: Fleet) -> None:
    for i in range(3):
        assert fleet.delivered(i, 9999) == 5          # nothing filtered yet
    r = fleet.push(deny(9999))
    assert r.ok, r.to_json()
    assert len(r.stages) == 2 and len(r.stages[0]) == 1      # a canary first
    for i in range(3):
        assert fleet.delivered(i, 9999) == 0 and fleet.delivered(i, 9998) == 5
    # one etcd member down: the push still works, the agents fail over
    fleet.cluster.stop(0)
    r = fleet.push(deny(9999, 9998))
    assert r.ok, r.to_json()
    for i in range(3):
        assert fleet.delivered(i, 9998) == 0
    # a bad policy (refused by the agents' parser): the canary fails, the rollout stops,
    # every host keeps the last good rules
    r = fleet.push('[[rule]]\nname = "x"\naction = "explode"\n', check=False, timeout=20)
    assert not r.ok and len(r.failed) == 1 and len(r.skipped) == 2
    (err,) = r.failed.values()
    assert "explode" in err
    for i in range(3):
        assert fleet.delivered(i, 9998) == 0
    rows = {s.host: s for s in fleet.in_core(store.fleet_status, fleet.client())}
    assert rows[r.stages[0][0]].state == "failed"
    # the other two were never pointed at it: still on v2, applied
    assert [rows[h].state for h in r.skipped] == ["applied", "applied"]
    assert all(rows[h].applied["version"] == 2 for h in r.skipped)
    # the push tool refuses it before anything is written, when it checks
    with pytest.raises(Exception, match="explode"):
        fleet.push('[[rule]]\nname = "x"\naction = "explode"\n')
    # rollback to v2 (the bad v3 is skipped): all applied
    r = fleet.in_core(lambda: store.rollback(fleet.client(), "edge", "edge-*", to_version=2))
    assert r.ok and r.version == 2
    # the command line sees the same (run in the core namespace, where etcd listens)
    (fleet.tmp / "root.pw").write_text("pw-root\n")
    etcd = ["--etcd", ",".join(fleet.cluster.endpoints), "--ca", fleet.pki.ca, "--cert",
            fleet.pki.clients["root"][0], "--key", fleet.pki.clients["root"][1],
            "--user", "root", "--password-file", str(fleet.tmp / "root.pw"), "--json"]
    p = fleet.tb.exec("core", ["env", f"PYTHONPATH={SRC}", sys.executable, "-m", "pyxdp", "fleet", "status", *etcd],
                      check=False)
    assert p.returncode == 0, p.stderr
    assert {d["host"]: d["state"] for d in json.loads(p.stdout)} == dict.fromkeys(
        HOSTS, "applied")
    pol = fleet.tmp / "edge.toml"
    pol.write_text(deny(9997))
    p = fleet.tb.exec("core", ["env", f"PYTHONPATH={SRC}", sys.executable, "-m", "pyxdp", "fleet", "push", str(pol),
                               "--hosts", "edge-[01]", *etcd], check=False)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] and sorted(out["applied"]) == ["edge-0", "edge-1"]
    assert fleet.delivered(0, 9997) == 0 and fleet.delivered(2, 9997) == 5
    pol.write_text('[[rule]]\nname = "x"\nsrc = "not-an-address"\n')
    p = fleet.tb.exec("core", ["env", f"PYTHONPATH={SRC}", sys.executable, "-m", "pyxdp", "fleet", "push", str(pol),
                               *etcd], check=False)
    assert p.returncode == 1 and "not-an-address" in p.stderr
    # a host's role reads its own keys and the policies, nothing else
    e0 = fleet.client("edge-0")
    assert fleet.in_core(e0.get_one, store.k_host("edge-0", "desired")) is not None
    with pytest.raises(PermissionDenied):
        fleet.in_core(e0.get_one, store.k_host("edge-1", "desired"))
    with pytest.raises(PermissionDenied):
        fleet.in_core(e0.put, store.k_host("edge-0", "desired"), "{}")
    with pytest.raises(PermissionDenied):
        fleet.in_core(e0.put, store.k_host("edge-1", "status"), "{}")


def test_partition_and_agent_killed_mid_apply(fleet: Fleet) -> None:
    assert fleet.push(deny(9999)).ok
    # partition edge-1: its namespace drops its etcd traffic
    rules = fleet.tmp / "part.nft"
    rules.write_text("table inet part {\n chain out {\n  type filter hook output priority"
                     " 0;\n  ip daddr 198.18.100.0/24 drop\n }\n}\n")
    fleet.tb.exec("h1", ["nft", "-f", str(rules)])
    c = fleet.client()
    v = fleet.in_core(store.write_policy, c, "edge", deny(9999, 9998))
    r = fleet.in_core(lambda: store.push(c, "edge", v, "edge-*", timeout=8))
    assert sorted(r.applied) == ["edge-0", "edge-2"] and r.lagging == ["edge-1"]
    assert fleet.delivered(1, 9999) == 0         # it keeps filtering with what it has
    assert fleet.delivered(1, 9998) == 5         # (the old version)
    # one more version while it is away, then etcd compacts its history: what the agent
    # missed is gone from the log, so only a full resync can bring it up to date
    v = fleet.in_core(store.write_policy, c, "edge", deny(9999, 9998, 9997))
    r = fleet.in_core(lambda: store.push(c, "edge", v, "edge-*", timeout=8))
    assert r.lagging == ["edge-1"]
    head = fleet.in_core(c.status)["header"]["revision"]
    fleet.in_core(c.compact, int(head))
    with pytest.raises(Compacted) as ei:
        fleet.in_core(lambda: next(iter(c.watch(store.k_host("edge-1", "desired"),
                                                start_revision=2, timeout=2))))
    assert ei.value.compact_revision == int(head)
    # the lease ran out: status shows it down
    assert store.wait_until(lambda: {s.host: s.state for s in fleet.in_core(
        store.fleet_status, c)}["edge-1"] == "down", 10)
    fleet.tb.exec("h1", ["nft", "delete", "table", "inet", "part"])
    assert store.wait_until(lambda: fleet.in_core(
        store.wait_applied, c, ["edge-1"], "edge", v, 0.1)[0] == ["edge-1"], 30)
    st = fleet.in_core(c.get_one, store.k_host("edge-1", "status"))
    import json
    d = json.loads(st.value)
    assert d["stale_events"] >= 1 and d["longest_stale_s"] > 1
    assert fleet.delivered(1, 9998) == 0
    assert fleet.delivered(1, 9997) == 0         # the version written while it was away
    # kill edge-2's agent right after its desired key changes, restart it: it converges
    big = deny(9999, 9998) + '[[rule]]\nname = "many"\nsrc = [' + ", ".join(
        f'"198.19.{i // 250}.{i % 250}/32"' for i in range(20000)) + "]\n"
    v3 = fleet.in_core(store.write_policy, c, "edge", big)
    fleet.in_core(store.assign, c, ["edge-2"], "edge", v3, "kill-test")
    time.sleep(0.3)
    fleet.stop_agent("edge-2", signal.SIGKILL)
    assert fleet.delivered(2, 9998) == 0          # old or new rules: never none
    fleet.start_agent(2)
    applied, failed, lagging = fleet.in_core(store.wait_applied, c, ["edge-2"], "edge", v3,
                                             60)
    assert applied == ["edge-2"], (failed, lagging)
    from pyxdp.apps.filter import Filter
    f = fleet.tb.call("h2", Filter.open, "eth0")
    try:
        names = [r.name for r in f.rules().rules]
    finally:
        f.close()
    assert names == ["udp9999", "udp9998", "many"]
