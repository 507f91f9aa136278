"""The demo's world: a TCP service, its client and an attacker, in namespaces of their own.

::

    client eth0 (198.18.1.10) ── c0  internet  v0 (198.18.0.1) ── victim eth0 (198.18.0.2)
                                     (router; the attacker            TCP service :8080
                                      floods from here)

The victim runs without SYN cookies, so a spoofed SYN flood fills its SYN queue and
legitimate connections fail: the classic SYN flood.  The victim has one uplink, like a
real server: legitimate traffic (routed from the client) and attack traffic arrive on the
same interface, where XDP sits.  The attacker floods with pyxdp's live-frames generator
straight out of the router's interface (spoofed sources); the client measures answered
requests per second and latency with real TCP connections, one per request, at a steady
rate.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pyxdp.testbed import NamespaceThread, Testbed

SERVICE_PORT = 8080
BACKLOG = 4096
CLIENT_RATE = 500  # requests per second the client aims at (a steady user population)
VICTIM_IP = "198.18.0.2"
CLIENT_IP = "198.18.1.10"
ROUTER_IP = "198.18.0.1"


@dataclass
class ClientStats:
    answered: int = 0
    failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q * len(data)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


def tcp_server(stop: threading.Event, listener: socket.socket) -> int:
    """Answer ``REQ n`` with ``ANS n`` on every connection until ``stop``; returns requests."""
    listener.settimeout(0.1)
    served = 0
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except (TimeoutError, BlockingIOError):
            continue
        except OSError:
            break
        with conn:
            conn.settimeout(0.5)
            try:
                data = conn.recv(256)
                if data.startswith(b"REQ"):
                    conn.sendall(b"ANS" + data[3:])
                    served += 1
            except OSError:
                pass
    return served


def tcp_client(seconds: float, timeout: float = 0.25, rate: int = CLIENT_RATE) -> ClientStats:
    """One TCP connection per request, ``rate`` requests per second, for ``seconds``."""
    st = ClientStats()
    t_start = time.monotonic()
    end = t_start + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        slot = t_start + n / rate
        pause = slot - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        t0 = time.perf_counter()
        try:
            with socket.create_connection((VICTIM_IP, SERVICE_PORT), timeout=timeout) as s:
                s.sendall(b"REQ%d" % n)
                if s.recv(256) == b"ANS%d" % n:
                    st.answered += 1
                    st.latencies_ms.append((time.perf_counter() - t0) * 1e3)
                else:
                    st.failed += 1
        except OSError:
            st.failed += 1
    st.seconds = time.monotonic() - t_start
    return st


def _pin_first_cpu() -> None:
    """Client and service on the first CPU; the attacker takes the last one."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, {cpus[0]})


class DemoBed:
    """Builds the topology and runs the service; ``with DemoBed() as bed: ...``."""

    def __init__(self) -> None:
        self.tb = Testbed()
        self._stop = threading.Event()
        self._server_thread: NamespaceThread | None = None
        self._server: Any = None
        self._listener: socket.socket | None = None

    def __enter__(self) -> DemoBed:
        tb = self.tb.__enter__()
        try:
            for ns in ("client", "internet", "victim"):
                tb.namespace(ns)
            self.client, _ = tb.veth("client", "eth0", "internet", "c0",
                                     ipv4=(f"{CLIENT_IP}/24", "198.18.1.1/24"))
            # two queues, like RSS on a NIC: veth picks the receive queue by the sending
            # CPU, so the attacker (pinned to the last CPU) and the client (routed on the
            # first) do not share one ring, and a flood cannot crowd legitimate frames out
            # of it.  What is left to protect is the service itself.
            self.attacker, self.victim = tb.veth("internet", "v0", "victim", "eth0",
                                                 ipv4=(f"{ROUTER_IP}/24", f"{VICTIM_IP}/24"),
                                                 queues=2)
            tb.sysctl("internet", "net.ipv4.ip_forward", "1")
            # XPS: what the router forwards on the first CPU (the client's traffic) leaves
            # by queue 0; the attacker's frames, sent from the last CPU, land on queue 1
            cpus = sorted(os.sched_getaffinity(0))
            if len(cpus) > 1:
                xps = "/sys/class/net/v0/queues/tx-{}/xps_cpus"
                tb.exec("internet", ["sh", "-c", f"echo {1 << cpus[0]:x} > {xps.format(0)} &&"
                                     f" echo {1 << cpus[-1]:x} > {xps.format(1)}"])
            tb.exec("client", ["ip", "route", "add", "default", "via", "198.18.1.1"])
            # answers to spoofed sources go to the router, which drops them silently (an
            # ICMP error back would free the victim's half-open connection at once)
            tb.exec("internet", ["ip", "route", "add", "blackhole", "198.19.0.0/16"])
            tb.exec("victim", ["ip", "route", "add", "default", "via", ROUTER_IP])
            # a server without SYN cookies, whose SYN queue a spoofed SYN flood fills up
            # (no saved TCP metrics: a client remembered from the calm phase would count as
            # a "proven peer" and skip the SYN backlog limit that hits everyone else)
            for key, value in (("net.ipv4.tcp_syncookies", "0"),
                               ("net.ipv4.tcp_no_metrics_save", "1"),
                               ("net.ipv4.tcp_synack_retries", "1"),
                               ("net.ipv4.tcp_max_syn_backlog", str(BACKLOG)),
                               ("net.core.somaxconn", str(BACKLOG))):
                tb.sysctl("victim", key, value)
            # live frames reach the victim as XDP frames: without a filter attached, GRO
            # lets them in (and on to the stack)
            tb.set_gro("victim", "eth0", True)
            self.start_service()
        except BaseException:
            self.close()
            raise
        return self

    def start_service(self) -> None:
        def listen() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((VICTIM_IP, SERVICE_PORT))
            s.listen(BACKLOG)
            return s

        self._listener = self.tb.call("victim", listen)
        self._server_thread = NamespaceThread(self.tb.ns_name("victim"))
        self._server_thread.call(_pin_first_cpu)
        self._server = self._server_thread.submit(tcp_server, self._stop, self._listener)

    def client_run(self, seconds: float) -> ClientStats:
        t = NamespaceThread(self.tb.ns_name("client"))
        try:
            t.call(_pin_first_cpu)
            return t.call(tcp_client, seconds)
        finally:
            t.close()

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.get(timeout=5)
        if self._server_thread is not None:
            self._server_thread.close()
        if self._listener is not None:
            self._listener.close()
        self.tb.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
