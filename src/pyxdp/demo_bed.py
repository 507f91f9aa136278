"""The demo's world: a TCP service, its clients and an attacker, in namespaces of their own.

::

    client (198.18.0.10) ──┐
                           ├── wire: br0 ── victim eth0 (198.18.0.2, TCP service :8080)
    attacker (198.18.0.66) ┘

The victim has one uplink, like a real server: legitimate and attack traffic arrive on the
same interface, where XDP sits.  The attacker floods with pyxdp's live-frames generator
(spoofed sources), the client measures answered requests per second and latency with
real TCP connections (one per request, so a SYN flood hurts it as it would hurt anyone).
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pyxdp.testbed import NamespaceThread, Testbed

SERVICE_PORT = 8080
VICTIM_IP = "198.18.0.2"
CLIENT_IP = "198.18.0.10"
ATTACKER_IP = "198.18.0.66"


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


def tcp_client(seconds: float, timeout: float = 0.25) -> ClientStats:
    """One TCP connection per request for ``seconds``."""
    st = ClientStats()
    end = time.monotonic() + seconds
    n = 0
    t_start = time.monotonic()
    while time.monotonic() < end:
        n += 1
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
            for ns in ("client", "attacker", "wire", "victim"):
                tb.namespace(ns)
            self.client, _ = tb.veth("client", "eth0", "wire", "c0",
                                     ipv4=(f"{CLIENT_IP}/24", "198.18.0.250/24"))
            self.attacker, _ = tb.veth("attacker", "eth0", "wire", "a0",
                                       ipv4=(f"{ATTACKER_IP}/24", "198.18.0.251/24"))
            self.victim, self.uplink = tb.veth("victim", "eth0", "wire", "v0",
                                               ipv4=(f"{VICTIM_IP}/24", "198.18.0.252/24"))
            tb.bridge("wire", "br0", ["c0", "a0", "v0"])
            # spoofed sources are not on the victim's subnet: answers (SYN-ACKs) go to a
            # default route into the wire, where they die, as on the Internet
            tb.exec("victim", ["ip", "route", "add", "default", "via", "198.18.0.252"])
            tb.sysctl("victim", "net.ipv4.tcp_syncookies", "1")
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
            s.listen(256)
            return s

        self._listener = self.tb.call("victim", listen)
        self._server_thread = NamespaceThread(self.tb.ns_name("victim"))
        self._server = self._server_thread.submit(tcp_server, self._stop, self._listener)

    def client_run(self, seconds: float) -> ClientStats:
        t = NamespaceThread(self.tb.ns_name("client"))
        try:
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
