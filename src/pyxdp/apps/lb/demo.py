"""``pyxdp demo lb``: a service behind a VIP, one of its reals drained and failing, and a
client that never notices.

As root, on the namespace bed of :mod:`pyxdp.apps.lb.bed` (a client, the LB, three
backends with real HTTP services): the client asks the VIP without pause while

1. all three reals take flows;
2. the operator drains b2 (maintenance): no new flows reach it;
3. b2's service stops: the client sees nothing (it was drained);
4. b2 comes back and the operator restores it: it takes flows again;
5. b3 crashes unannounced: the health check takes it out within fall x interval (the
   requests that reached it before are counted as failed: that is the detection window);
6. b3 comes back: the health check restores it after ``rise`` good checks.

Every phase: requests answered and failed, per backend.  Without root, the same data
plane runs in the pyxdp emulator on synthetic SYNs: the spread over three reals, a drain,
and established flows that stay on the drained real.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

VIP = "198.18.100.1"
PIN, STATE = "/sys/fs/bpf/pyxdp-demo-lb", "/run/pyxdp-demo-lb"


class Client:
    """Asks the VIP in a loop (a fresh HTTP connection each time) in the client namespace."""

    def __init__(self, tb: Any) -> None:
        self.tb = tb
        self.answers: Counter[str] = Counter()
        self.failed = 0
        self.errors: Counter[str] = Counter()      # failures by kind (refused, reset, ...)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from pyxdp.apps.lb import bed as lbed

        while not self._stop.is_set():
            try:
                who = self.tb.call("c", lbed.http_get, VIP, 80, 2.0)
                self.answers[who] += 1
            except OSError as e:
                self.failed += 1
                self.errors["timeout" if isinstance(e, TimeoutError)
                            else type(e).__name__] += 1
            time.sleep(0.01)

    def take(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """What was answered, how many failed and why, since the last take."""
        a, f, e = dict(self.answers), self.failed, dict(self.errors)
        self.answers.clear()
        self.errors.clear()
        self.failed = 0
        return a, f, e

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def run_kernel_demo(seconds: float = 2.0, log: Callable[[str], None] = print
                    ) -> list[dict[str, Any]]:
    from pyxdp.apps.lb import LoadBalancer
    from pyxdp.apps.lb import bed as lbed
    from pyxdp.apps.lb.health import HealthChecker
    from pyxdp.testbed import Testbed

    phases: list[dict[str, Any]] = []
    with Testbed() as tb:
        bed = lbed.Bed(tb, 3, vips=(VIP,))
        lb = None
        try:
            bed.start_services()
            bed.start_decap()
            cfg = {"ports": ["l0"], "mode": "native", "ring_size": 1021,
                   "source4": lbed.LB4,
                   "service": [{"vip": VIP, "port": 80, "method": "gue",
                                "health": {"kind": "http", "interval": 0.2,
                                           "timeout": 0.2, "rise": 3, "fall": 2},
                                "reals": [{"address": lbed.real4(i)} for i in (1, 2, 3)]}]}
            lb = tb.call("lb", LoadBalancer.attach, cfg, pin_root=PIN, state_root=STATE)
            log(f"test bed: client {lbed.CLIENT4} -> pyxdp lb {lbed.LB4} (XDP on l0, GUE)"
                f" -> backends b1-b3 {lbed.real4(1)}-{lbed.real4(3)}; the VIP {VIP}:80"
                " answers straight from the backends (DSR)")
            key = f"{VIP}:80/tcp"
            hc = HealthChecker(lb, call=lambda f, *a: tb.call("lb", f, *a),
                               log=lambda m: log(f"    health: {m}"))
            with Client(tb) as client, hc:
                def phase(name: str) -> None:
                    time.sleep(seconds)
                    answers, failed, errors = client.take()
                    phases.append({"phase": name, "answered": answers, "failed": failed,
                                   "errors": errors})
                    spread = ", ".join(f"{k} {v}" for k, v in sorted(answers.items()))
                    why = (" (" + ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
                           + ")") if errors else ""
                    log(f"  {name:<34} answered {sum(answers.values()):4d} ({spread}),"
                        f" failed {failed}{why}")

                phase("three reals")
                tb.call("lb", lb.drain, key, lbed.real4(2))
                phase("b2 drained (maintenance)")
                bed.stop_service(2)
                phase("b2 drained, its service stopped")
                bed.start_service(2)
                tb.call("lb", lb.restore, key, lbed.real4(2))
                phase("b2 back and restored")
                bed.stop_service(3)            # unannounced: only the health check knows
                phase("b3 crashed (health check)")
                bed.start_service(3)
                time.sleep(1.0)                # rise x interval, and a round to spare
                phase("b3 back (health check)")
        finally:
            if lb is not None:
                tb.call("lb", lb.close)
            tb.call("lb", LoadBalancer.force_detach, PIN, state_root=STATE)
            bed.close()
    failed = sum(p["failed"] for p in phases)
    log(f"the client made {sum(sum(p['answered'].values()) for p in phases)} requests;"
        f" {failed} failed")
    return phases


def run_emulator_demo(n: int = 3000, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The data plane in the emulator: ``n`` new flows over three reals, then a drain."""
    import ipaddress

    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from pyxdp.apps.lb import maglev
    from pyxdp.apps.lb import program as pg
    from pyxdp.emu import EmuBackend, Fib

    reals = ["198.18.10.11", "198.18.10.12", "198.18.10.13"]
    macs = {r: f"02:1e:00:00:00:1{i}" for i, r in enumerate(reals, 1)}
    coll = pg.load_lb(EmuBackend(), ring_size=251, max_vips=4, max_reals=8, max_conns=8192,
                      config={"SRC4": int(ipaddress.ip_address("198.18.10.1"))},
                      ifindexes=[2])
    try:
        fib = Fib()
        for r in reals:
            fib.add_route(r, 2, "02:1b:00:00:00:01", macs[r])
        prog: Any = coll.programs[pg.PROGRAM]       # the emulator's program: its FIB is ours
        prog.machine.fib = fib
        maps = pg.compiled().typed_maps(coll)
        for i, r in enumerate(reals):
            pg.set_real(maps, i, ipaddress.ip_address(r), 1)
        key = pg.vip_key(ipaddress.ip_address(VIP), 80, 6)

        def ring(weights: list[int], bank: int) -> None:
            pg.write_ring(maps, 0, bank, maglev.build(
                {r: (i, w) for i, (r, w) in enumerate(zip(reals, weights, strict=True))}, 251),
                251)
            pg.set_vip(maps, key, 0, pg.METHODS["dsr"], bank, False, 0)

        def send(sports: range) -> Counter[str]:
            got: Counter[str] = Counter()
            back = {m: f"b{i}" for i, m in enumerate(macs.values(), 1)}
            for sp in sports:
                f = Ether(src="02:1c:00:00:00:02", dst="02:1b:00:00:00:01") / IP(
                    src="198.19.7.7", dst=VIP) / TCP(sport=sp, dport=80, flags="S")
                r = prog.run_packet(bytes(f), ingress_ifindex=2)
                got[back.get(Ether(r.packet).dst, "?")] += 1
            return got

        ring([1, 1, 1], 0)
        first = send(range(20000, 20000 + n))
        log(f"  {n} new flows over three reals:      "
            + ", ".join(f"{k} {v}" for k, v in sorted(first.items())))
        ring([1, 0, 1], 1)
        again = send(range(20000, 20000 + n))
        log("  b2 drained, the same flows again:   "
            + ", ".join(f"{k} {v}" for k, v in sorted(again.items()))
            + "  (established flows stay)")
        fresh = send(range(40000, 40000 + n))
        log(f"  b2 drained, {n} new flows:         "
            + ", ".join(f"{k} {v}" for k, v in sorted(fresh.items())))
        return {"first": dict(first), "established_after_drain": dict(again),
                "new_after_drain": dict(fresh)}
    finally:
        coll.close()


def main(log: Callable[[str], None] = print, emulator: bool = False) -> int:
    from pyxdp._privilege import can_run_test_beds

    if can_run_test_beds() and not emulator:
        run_kernel_demo(log=log)
        return 0
    log("running the load balancer in the pyxdp emulator instead of the kernel"
        + ("" if emulator else " (no root privileges: CAP_SYS_ADMIN and CAP_NET_ADMIN)"))
    run_emulator_demo(log=log)
    return 0


__all__ = ["main", "run_emulator_demo", "run_kernel_demo"]
