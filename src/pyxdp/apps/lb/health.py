"""Health checks run by the load balancer's control plane: a TCP connect or an HTTP GET
to every real of a service that has a ``health`` setting, every ``interval`` seconds;
``fall`` failures in a row mark the real ``down`` (no new flows: its ring weight is 0,
established connections stay on it), ``rise`` successes in a row bring it back.  A real
an operator drained stays drained.  The checks run from the balancer's namespace, to the
real's own address (not the VIP)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pyxdp.apps.lb.config import Health


def probe(address: str, port: int, h: Health) -> bool:
    """One check: True when the real answered as ``h`` asks."""
    try:
        with socket.create_connection((address, port), timeout=h.timeout) as s:
            if h.kind == "tcp":
                return True
            host = f"[{address}]" if ":" in address else address
            s.sendall(f"GET {h.path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: pyxdp-lb\r\n"
                      "Connection: close\r\n\r\n".encode())
            s.settimeout(h.timeout)
            head = s.recv(64)
    except OSError:
        return False
    parts = head.split(None, 2)
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1][:1] in (b"2", b"3")


class HealthChecker:
    """Runs the checks of ``lb`` (a :class:`~pyxdp.apps.lb.control.LoadBalancer`) in a
    thread until :meth:`stop`; ``log`` gets one line per state change."""

    def __init__(self, lb: Any, log: Callable[[str], None] | None = None,
                 call: Callable[..., Any] | None = None) -> None:
        self.lb = lb
        self.log = log or (lambda _m: None)
        self.call = call or (lambda f, *a: f(*a))   # e.g. run inside a namespace
        self._stop = threading.Event()
        self._streak: dict[tuple[str, str], int] = {}   # >0 successes, <0 failures
        self._due: dict[str, float] = {}
        self.changes: list[tuple[float, str, str, str]] = []
        self._thread = threading.Thread(target=self._run, name="pyxdp-lb-health",
                                        daemon=True)

    def start(self) -> HealthChecker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> HealthChecker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_once(self) -> None:
        """One round over every service whose check is due."""
        now = time.monotonic()
        for s in self.call(self.lb.services):
            h = s.health
            if h is None or self._due.get(s.key, 0) > now:
                continue
            self._due[s.key] = now + h.interval
            port = h.port or s.port
            for r in s.reals:
                addr = str(r.address)
                ok = self.call(probe, addr, port, h)
                k = (s.key, addr)
                n = self._streak.get(k, 0)
                n = (n + 1 if n > 0 else 1) if ok else (n - 1 if n < 0 else -1)
                self._streak[k] = n
                to = ("down" if r.state == "active" and n <= -h.fall else
                      "active" if r.state == "down" and n >= h.rise else None)
                if to is not None and self.call(self.lb.mark, s.key, addr, to):
                    self._note(s.key, addr, to)

    def _note(self, key: str, addr: str, state: str) -> None:
        self.changes.append((time.monotonic(), key, addr, state))
        self.log(f"{key}: real {addr} is {state}")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception as e:        # keep checking; say what went wrong
                self.log(f"health check round failed: {type(e).__name__}: {e}")
            self._stop.wait(0.05)


__all__ = ["HealthChecker", "probe"]
