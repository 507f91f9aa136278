"""Fleet convergence: how long until every one of N hosts reports a large filter policy
applied, with all etcd members up and with one of three down, alternating rounds (root).

Bed: a 3-member etcd cluster with TLS client certificates and token auth in namespace
``core`` (198.18.100.1-3), N host namespaces each reaching it over its own veth, each with an
agent process (``pyxdp agent``) and the filter on a veth of its own.  Per sample: a new
version of a policy of ``--prefixes`` source prefixes (a different set each time, so every
host really applies it) is written and rolled out to all hosts in one stage; the time is
from the start of the write until the last host's ``applied`` key names the version (the
write, the agents' read, parse and filter generation swap, their reports).

Run: ``python -m pyxdp.bench.fleet_converge`` (root); results in
``bench/results/fleet_converge.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyxdp.bench import harness, options
from pyxdp.bench.harness import Report, alternate, stderr_log

NAME = "fleet_converge"
TITLE = "Fleet convergence: a large filter policy on N hosts through etcd"
UP, DOWN = "3 of 3 members up", "1 of 3 members down"
ETCD_IPS = ["198.18.100.1", "198.18.100.2", "198.18.100.3"]


def policy(prefixes: int, salt: int) -> str:
    """A drop rule with ``prefixes`` distinct /32 sources in 198.18.0.0/15 (``salt``
    shifts the set) and one UDP port rule."""
    base = (salt * 7919) % 100_000
    nets = ", ".join(f'"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}.{i & 255}/32"'
                     for i in (base + k for k in range(prefixes)))
    return (f'[[rule]]\nname = "udp9999"\nproto = "udp"\ndport = ["9999"]\n'
            f'[[rule]]\nname = "sources"\nsrc = [{nets}]\n')


class FleetConverge:
    def __init__(self, hosts: int, prefixes: int, rounds: int,
                 log: Callable[[str], None] = stderr_log) -> None:
        self.n, self.prefixes, self.rounds, self.log = hosts, prefixes, rounds, log
        self.detail: list[dict[str, Any]] = []

    def run(self) -> Report:
        from pyxdp.apps.filter import Filter
        from pyxdp.fleet import store
        from pyxdp.fleet.cluster import Cluster, make_pki
        from pyxdp.fleet.etcd import Client, wait_ready
        from pyxdp.testbed import Testbed

        names = [f"edge-{i:02d}" for i in range(self.n)]
        src = Path(__file__).resolve().parents[2]
        with Testbed() as tb, tempfile.TemporaryDirectory() as tmp:
            tb.namespace("core")
            tb.exec("core", ["ip", "link", "set", "lo", "up"])
            for ip in ETCD_IPS:
                tb.exec("core", ["ip", "addr", "add", f"{ip}/32", "dev", "lo"])
            for i in range(self.n):
                tb.namespace(f"h{i}")
                tb.veth(f"h{i}", "up", "core", f"h{i}",
                        ipv4=(f"198.18.{110 + i}.2/24", f"198.18.{110 + i}.1/24"))
                tb.exec(f"h{i}", ["ip", "route", "add", "198.18.100.0/24", "via",
                                  f"198.18.{110 + i}.1"])
                tb.namespace(f"s{i}")
                tb.veth(f"s{i}", "out", f"h{i}", "eth0")
            pki = make_pki(os.path.join(tmp, "pki"), ["root", *names], ETCD_IPS)
            full = tb.ns_name("core")
            cluster = Cluster(3, pki=pki, hosts=ETCD_IPS, netns=["core"] * 3,
                              exec_in=lambda _ns, argv: ["ip", "netns", "exec", full, *argv])
            agents: list[subprocess.Popen[bytes]] = []
            try:
                cluster.start()
                bare = Client(cluster.endpoints, tls=pki.tls("root"))
                tb.call("core", wait_ready, bare, 30)
                tb.call("core", store.init_auth, bare, "pw-root")
                admin = Client(cluster.endpoints, tls=pki.tls("root"), user="root",
                               password="pw-root", timeout=10)
                for h in names:
                    tb.call("core", store.provision_host, admin, h, f"pw-{h}")
                    Path(tmp, f"{h}.pw").write_text(f"pw-{h}\n")
                for i, h in enumerate(names):
                    argv = [sys.executable, "-m", "pyxdp", "agent", "--host", h, "--iface",
                            "eth0", "--netns", tb.ns_name(f"h{i}"), "--lease-ttl", "5",
                            "--etcd", ",".join(cluster.endpoints), "--ca", pki.ca,
                            "--cert", pki.clients[h][0], "--key", pki.clients[h][1],
                            "--user", h, "--password-file", os.path.join(tmp, f"{h}.pw")]
                    agents.append(subprocess.Popen(
                        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env={**os.environ, "PYTHONPATH": str(src)}))
                salt = [0]

                def sample(side: str) -> float:
                    if side == DOWN:
                        cluster.stop(2)
                    try:
                        salt[0] += 1
                        text = policy(self.prefixes, salt[0])

                        def go() -> tuple[float, Any]:
                            t0 = time.monotonic()
                            v = store.write_policy(admin, "edge", text, check=False)
                            r = store.push(admin, "edge", v, "edge-*", timeout=300)
                            return time.monotonic() - t0, r

                        seconds, r = tb.call("core", go)
                        if not r.ok:
                            raise RuntimeError(f"rollout failed: {r.to_json()}")
                        self.detail.append({"side": side, "seconds": seconds,
                                            "rollout_seconds": r.seconds,
                                            "version": r.version})
                        return float(seconds)
                    finally:
                        if side == DOWN:
                            cluster.start(2)
                            time.sleep(1.0)        # rejoins before the next sample

                self.log(f"warm-up: first policy to {self.n} hosts (agents start, compile)")
                sample(UP)
                self.detail.clear()
                results = alternate({UP: lambda: sample(UP), DOWN: lambda: sample(DOWN)},
                                    self.rounds, log=self.log)
            finally:
                for a in agents:
                    a.terminate()
                for a in agents:
                    try:
                        a.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        a.kill()
                        a.wait(timeout=10)
                cluster.close()
                for i in range(self.n):
                    try:
                        tb.call(f"h{i}", Filter.force_detach, "eth0")
                    except Exception as e:   # report, never leave the bench half-done
                        self.log(f"h{i}: force_detach: {e}")
        return self.report(results)

    def report(self, results: dict[str, list[float]]) -> Report:
        r = Report(NAME, TITLE, rounds=self.rounds,
                   params={"hosts": self.n, "prefixes": self.prefixes, "etcd_members": 3})
        r.compact = True
        r.intro = (f"{self.n} hosts (namespaces, each an agent process and a filter), a"
                   f" {self.prefixes:,}-prefix policy; seconds from the write of a new"
                   " version until every host reports it applied.  All processes share the"
                   " 2 vCPUs of this VM.")
        for side, samples in results.items():
            r.side(side, samples, "s", better=harness.LOWER)
        r.compare("one member down vs all up", DOWN, UP)
        u, d = harness.summarize(results[UP]), harness.summarize(results[DOWN])
        r.table("Seconds until all hosts applied, median (min-max)",
                ["etcd", "seconds"],
                [[UP, f"{u.median:.2f} ({u.min:.2f}-{u.max:.2f})"],
                 [DOWN, f"{d.median:.2f} ({d.min:.2f}-{d.max:.2f})"]],
                "Each sample is one new policy version rolled out to every host in one"
                " stage (no canary).")
        r.extra = {"samples": self.detail}
        return r


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("needs root: it builds network namespaces and attaches XDP", file=sys.stderr)
        return 1
    report = FleetConverge(args.hosts, args.prefixes, args.rounds).run()
    return harness.finish(report, args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.fleet_converge",
                                 description=TITLE)
    ap.add_argument("--hosts", type=options.COUNT, default=10)
    ap.add_argument("--prefixes", type=options.COUNT, default=100_000)
    options.common(ap)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
