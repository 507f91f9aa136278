"""The load balancer's test bed: clients, the LB and backends on one L2 segment (so the
backends answer the clients directly: direct server return), each backend a real
service.  Namespaces of a :class:`pyxdp.testbed.Testbed`::

    c   c0  198.18.10.2   2001:db8:10::2    routes 198.18.100.0/24, 2001:db8:100::/64 via
                                            the LB (.1, ::1)
    lb  l0  198.18.10.1   2001:db8:10::1    the balancer (XDP on l0)
    bN  b0  198.18.10.1N  2001:db8:10::1N   backends 1..n, set up by
                                            :func:`pyxdp.apps.lb.backend.setup_backend`
                                            (:meth:`Bed.start_decap`): the VIPs on lo, ARP
                                            off them, pyxdp tunnel decapsulating
                                            IPIP/IPv6-in-IP/GUE from the LB
    sw  br0 the bridge joining them (its ports with GRO on: redirected XDP frames need
            NAPI on the peer)

Each backend runs :func:`serve`: HTTP on port 80 (``GET /`` answers ``backend bN``) and a
line echo on port 7 (``bN: <line>``), dual-stack, on every address (the VIPs included).
"""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import sys
from pathlib import Path
from typing import Any

from pyxdp.apps.router.bed import set_tx_checksum
from pyxdp.testbed import Testbed

LB4, LB6 = "198.18.10.1", "2001:db8:10::1"
CLIENT4, CLIENT6 = "198.18.10.2", "2001:db8:10::2"
VIP_NET4, VIP_NET6 = "198.18.100.0/24", "2001:db8:100::/64"


def real4(i: int) -> str:
    return f"198.18.10.{10 + i}"


def real6(i: int) -> str:
    return f"2001:db8:10::{10 + i}"


def mac(kind: int, i: int) -> str:
    return f"02:1a:00:00:{kind:02x}:{i:02x}"


class Bed:
    """The bed inside ``tb`` with ``n`` backends; :meth:`close` stops what it started."""

    def __init__(self, tb: Testbed, n: int = 3, vips: tuple[str, ...] = ()) -> None:
        self.tb = tb
        self.n = n
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.tunnels: dict[str, Any] = {}
        tb.namespace("sw")
        ports: list[str] = []
        for ns, ifname, v4, v6, m in [("c", "c0", CLIENT4, CLIENT6, mac(1, 2)),
                                      ("lb", "l0", LB4, LB6, mac(1, 1))] + [
                (f"b{i}", "b0", real4(i), real6(i), mac(2, i)) for i in range(1, n + 1)]:
            tb.namespace(ns)
            peer = f"s-{ns}"
            tb.veth(ns, ifname, "sw", peer, macs=(m, mac(3, len(ports) + 1)))
            tb.exec(ns, ["ip", "addr", "add", f"{v4}/24", "dev", ifname])
            tb.exec(ns, ["ip", "-6", "addr", "add", f"{v6}/64", "dev", ifname, "nodad"])
            tb.set_gro(ns, ifname, True)
            tb.set_gro("sw", peer, True)
            tb.call(ns, set_tx_checksum, ifname, False)
            ports.append(peer)
        tb.bridge("sw", "br0", ports)
        tb.exec("sw", ["ip", "link", "set", "br0", "up"])
        # a veth delivers XDP_TX frames only to a peer that runs XDP itself (veth_xdp_flush
        # wakes the peer's NAPI only then): the LB's peer port gets an XDP_PASS program,
        # as the NIC on the other end of a real LB's wire would just receive
        from pyxdp import xdp
        from pyxdp.asm import programs as progs
        from pyxdp.isa import XdpAction
        from pyxdp.kernel import Program

        self._pass = Program.load(progs.xdp_verdict(XdpAction.PASS), name="lb_bed_pass")
        self._pass_att = tb.call("sw", xdp.attach, "s-lb", self._pass, "native")
        tb.route("c", VIP_NET4, LB4)
        tb.exec("c", ["ip", "-6", "route", "add", VIP_NET6, "via", LB6])
        tb.sysctl("lb", "net.ipv4.ip_forward", "1")           # bpf_fib_lookup needs it
        tb.sysctl("lb", "net.ipv6.conf.all.forwarding", "1")
        # neighbours resolved both ways up front (the LB's FIB lookups need them)
        for i in range(1, n + 1):
            for a in (real4(i), real6(i)):
                tb.exec("lb", ["ping", "-c", "1", "-W", "2", a], check=False, timeout=10)
            for a in (CLIENT4, CLIENT6):
                tb.exec(f"b{i}", ["ping", "-c", "1", "-W", "2", a], check=False, timeout=10)
        self.vips = list(vips)

    def start_services(self) -> None:
        for i in range(1, self.n + 1):
            self.start_service(i)

    def start_service(self, i: int) -> None:
        b = f"b{i}"
        # this very package, whatever else is installed
        src = str(Path(__file__).resolve().parents[3])
        p = self.tb.popen(b, [sys.executable, "-m", "pyxdp.apps.lb.bed", "serve", b],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": src})
        assert p.stdout is not None
        line = p.stdout.readline()           # "ready" once both sockets listen
        if not line.startswith(b"ready"):
            p.kill()
            p.wait(5)
            raise RuntimeError(f"backend {b}'s service did not start")
        self.procs[b] = p

    def stop_service(self, i: int) -> None:
        p = self.procs.pop(f"b{i}", None)
        if p is not None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def start_decap(self) -> None:
        """Every backend set up as :func:`pyxdp.apps.lb.backend.setup_backend` does (the
        VIPs on lo, ARP off them, pyxdp tunnel decapsulating IPIP/IPv6-in-IP/GUE from the
        LB on b0)."""
        from pyxdp.apps.lb.backend import setup_backend

        for i in range(1, self.n + 1):
            b = f"b{i}"
            self.tunnels[b] = self.tb.call(b, setup_backend, "b0", self.vips, [LB4, LB6],
                                           pin_root=f"/sys/fs/bpf/pyxdp-lbbed-{b}",
                                           state_root=f"/run/pyxdp-lbbed-{b}")

    def close(self) -> None:
        for i in range(1, self.n + 1):
            self.stop_service(i)
        try:
            self.tb.call("sw", self._pass_att.detach)
        finally:
            self._pass.close()
        for b, app in list(self.tunnels.items()):
            try:
                self.tb.call(b, app.detach)
            finally:
                del self.tunnels[b]


# -- the backend service (run inside a backend's namespace) -----------------------------------
class _Dual(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def serve(name: str) -> None:
    """HTTP on 80 and a line echo on 7 until SIGTERM; prints ``ready`` once listening."""
    import threading

    class Http(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                line = self.rfile.readline(4096)
                if not line:
                    return
                while True:                          # the rest of the request's header
                    h = self.rfile.readline(4096)
                    if h in (b"\r\n", b"\n", b""):
                        break
                body = f"backend {name}\n".encode()
                keep = b"HTTP/1.1" in line
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                 b"Content-Length: %d\r\n%s\r\n" % (
                                     len(body), b"" if keep else b"Connection: close\r\n")
                                 + body)
                if not keep:
                    return

    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                self.wfile.write(f"{name}: ".encode() + line)

    servers = [_Dual(("::", 80), Http), _Dual(("::", 7), Echo)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait(600)                               # bounded: a forgotten backend ends
    for s in servers:
        s.shutdown()
        s.server_close()


# -- client helpers (run inside the client's namespace) --------------------------------------
def http_get(vip: str, port: int = 80, timeout: float = 3.0,
             source_port: int = 0) -> str:
    """``GET /`` on a fresh connection: the backend's name."""
    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if source_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", source_port))
        s.connect((vip, port))
        s.sendall(f"GET / HTTP/1.0\r\nHost: {vip}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"bad answer from {vip}: {head[:40]!r}")
    return body.decode().strip().removeprefix("backend ")


class EchoConn:
    """A long-lived connection to the echo service: :meth:`say` returns who answered."""

    def __init__(self, vip: str, port: int = 7, timeout: float = 3.0) -> None:
        self.sock = socket.create_connection((vip, port), timeout=timeout)
        self.f = self.sock.makefile("rwb")

    def say(self, text: str) -> str:
        self.f.write(text.encode() + b"\n")
        self.f.flush()
        line = self.f.readline()
        if not line:
            raise OSError("the connection was closed")
        who, _, back = line.decode().rstrip("\n").partition(": ")
        if back != text:
            raise OSError(f"echo {back!r} for {text!r}")
        return who

    def close(self) -> None:
        self.f.close()
        self.sock.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
        os._exit(0)
    print("usage: python -m pyxdp.apps.lb.bed serve NAME", file=sys.stderr)
    sys.exit(2)
