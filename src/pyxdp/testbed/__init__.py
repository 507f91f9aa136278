"""Network test beds: private network namespaces joined by veth pairs.

A :class:`Testbed` owns everything it creates and deletes it on exit, even after an error:
namespaces are named ``pyxdp-<pid>-<tag>-<name>`` so that leftovers of a crashed earlier run
(whose pid is gone) are recognised and removed, and nothing else is ever touched.  Veth pairs
are created directly inside their namespaces, never in the caller's namespace.

Addresses are restricted to the benchmarking ranges 198.18.0.0/15 and 2001:db8::/32 (the
documentation range), so a test bed can never collide with a real network.

Code that must run *inside* a namespace (sockets, attaching XDP by ifindex, live-frame test
runs) runs on a dedicated thread that has entered the namespace with ``setns`` (namespaces are
per thread on Linux): ``tb.call("sink", fn, *args)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import queue
import re
import secrets
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyxdp.errors import PyxdpError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
ALLOWED_V4 = ipaddress.ip_network("198.18.0.0/15")
ALLOWED_V6 = ipaddress.ip_network("2001:db8::/32")
_NAME_RE = re.compile(r"^pyxdp-(\d+)-[0-9a-f]+-")


class TestbedError(PyxdpError):
    """A test bed could not be built (bad address, no privileges, netlink refused)."""

    __test__ = False  # not a pytest test class


def check_address(addr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """Parse ``addr`` (``a.b.c.d/n`` or ``x::y/n``) and refuse anything outside the test ranges."""
    try:
        iface = ipaddress.ip_interface(addr)
    except ValueError as e:
        raise TestbedError(f"bad address {addr!r}: {e}") from None
    allowed = ALLOWED_V4 if iface.version == 4 else ALLOWED_V6
    if iface.ip not in allowed:
        raise TestbedError(f"address {addr} is outside {allowed}: test beds only use the"
                           " benchmarking (198.18.0.0/15) and documentation (2001:db8::/32) ranges")
    return iface


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NamespaceThread:
    """A worker thread living inside one network namespace; runs callables there."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self._jobs: queue.Queue[tuple[Callable[..., Any], tuple, dict, queue.Queue] | None] = (
            queue.Queue())
        ready: queue.Queue[BaseException | None] = queue.Queue()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True,
                                        name=f"netns-{ns}")
        self._thread.start()
        err = ready.get()
        if err is not None:
            raise TestbedError(f"cannot enter namespace {ns}: {err}") from err

    def _main(self, ready: queue.Queue) -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, self.ns), os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
        except BaseException as e:  # reported to the creator
            ready.put(e)
            return
        ready.put(None)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, kwargs, out = job
            try:
                out.put((True, fn(*args, **kwargs)))
            except BaseException as e:
                out.put((False, e))

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        out: queue.Queue = queue.Queue()
        self._jobs.put((fn, args, kwargs, out))
        ok, value = out.get()
        if not ok:
            raise value
        return value

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> queue.Queue:
        """Start ``fn`` in the namespace without waiting; ``.get()`` the queue for (ok, value)."""
        out: queue.Queue = queue.Queue()
        self._jobs.put((fn, args, kwargs, out))
        return out

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=10)


@dataclass
class Interface:
    """One end of a veth pair, as built."""

    ns: str            # short namespace name given by the user
    name: str
    ifindex: int = 0
    mac: str = ""
    ipv4: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)

    @property
    def ip4(self) -> str:
        return self.ipv4[0].split("/")[0] if self.ipv4 else ""

    @property
    def ip6(self) -> str:
        return self.ipv6[0].split("/")[0] if self.ipv6 else ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(prefix: str = "pyxdp-") -> list[str]:
    """Delete namespaces of earlier test beds whose creating process is gone."""
    removed: list[str] = []
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return removed
    for name in names:
        m = _NAME_RE.match(name)
        if m and name.startswith(prefix) and not _pid_alive(int(m.group(1))):
            _delete_ns(name)
            removed.append(name)
    return removed


def _delete_ns(full: str) -> None:
    from pyroute2 import netns

    with contextlib.suppress(OSError):
        netns.remove(full)


class Testbed:
    """Namespaces and veth pairs that exist for the lifetime of the ``with`` block."""

    __test__ = False

    def __init__(self, tag: str | None = None) -> None:
        if os.geteuid() != 0:
            raise TestbedError("building a test bed needs root (network namespaces and veth)")
        if tag is not None and not re.fullmatch(r"[0-9a-f]{1,8}", tag):
            raise TestbedError(f"tag {tag!r}: 1-8 lowercase hex digits (stale-bed cleanup"
                               " recognises names by it)")
        self.tag = tag or secrets.token_hex(3)
        self._ns: dict[str, str] = {}          # short name -> full name
        self._threads: dict[str, NamespaceThread] = {}
        self.interfaces: dict[tuple[str, str], Interface] = {}
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Testbed:
        remove_stale()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self._threads.values():
            t.close()
        self._threads.clear()
        for full in self._ns.values():
            _delete_ns(full)
        self._ns.clear()

    # -- building ------------------------------------------------------------------------
    def ns_name(self, ns: str) -> str:
        """The real (``ip netns``) name of the short namespace name ``ns``."""
        try:
            return self._ns[ns]
        except KeyError:
            raise TestbedError(f"no namespace {ns!r} in this test bed") from None

    def namespace(self, name: str) -> str:
        """Create a namespace (loopback up) and return its short name."""
        from pyroute2 import NetNS, netns

        if not re.fullmatch(r"[a-z0-9]{1,12}", name):
            raise TestbedError(f"namespace name {name!r}: use 1-12 lowercase letters/digits")
        if name in self._ns:
            raise TestbedError(f"namespace {name!r} exists already")
        full = f"pyxdp-{os.getpid()}-{self.tag}-{name}"
        try:
            netns.create(full)
        except OSError as e:
            raise TestbedError(f"cannot create namespace {full}: {e}") from e
        self._ns[name] = full
        with NetNS(full) as ns:
            lo = ns.link_lookup(ifname="lo")
            if lo:
                ns.link("set", index=lo[0], state="up")
        # Addresses must be usable at once: no duplicate address detection in a private bed.
        for key in ("net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"):
            self.sysctl(name, key, "0")
        return name

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str, *,
             ipv4: tuple[str, str] | None = None, ipv6: tuple[str, str] | None = None,
             mtu: int | None = None, queues: int = 1,
             macs: tuple[str, str] | None = None) -> tuple[Interface, Interface]:
        """A veth pair ``ns_a/name_a <-> ns_b/name_b``, up, with optional addresses."""
        from pyroute2 import NetNS

        for n in (name_a, name_b):
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", n):
                raise TestbedError(f"interface name {n!r}: 1-15 characters [A-Za-z0-9_.-]")
        v4 = [check_address(a) for a in ipv4] if ipv4 else []
        v6 = [check_address(a) for a in ipv6] if ipv6 else []
        full_a, full_b = self.ns_name(ns_a), self.ns_name(ns_b)
        peer: dict[str, Any] = {"ifname": name_b, "net_ns_fd": full_b}
        extra: dict[str, Any] = {}
        if queues > 1:
            extra.update(num_tx_queues=queues, num_rx_queues=queues)
            peer.update(num_tx_queues=queues, num_rx_queues=queues)
        if macs:
            extra["address"] = macs[0]
            peer["address"] = macs[1]
        try:
            with NetNS(full_a) as ns:
                ns.link("add", ifname=name_a, kind="veth", peer=peer, **extra)
        except Exception as e:  # pyroute2 raises NetlinkError, not always an OSError
            raise TestbedError(f"cannot create veth {ns_a}/{name_a} <-> {ns_b}/{name_b}: {e}"
                               ) from e
        ends = []
        for full, short, name, idx in ((full_a, ns_a, name_a, 0), (full_b, ns_b, name_b, 1)):
            with NetNS(full) as ns:
                index = ns.link_lookup(ifname=name)[0]
                if mtu:
                    ns.link("set", index=index, mtu=mtu)
                iface = Interface(short, name, index)
                for a in v4[idx:idx + 1]:
                    ns.addr("add", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
                    iface.ipv4.append(str(a))
                for a in v6[idx:idx + 1]:
                    ns.addr("add", index=index, address=str(a.ip), prefixlen=a.network.prefixlen)
                    iface.ipv6.append(str(a))
                ns.link("set", index=index, state="up")
                iface.mac = ns.get_links(index)[0].get("address")
            self.interfaces[(short, name)] = iface
            ends.append(iface)
        return ends[0], ends[1]

    def bridge(self, ns: str, name: str, ports: list[str]) -> int:
        """A Linux bridge ``name`` in namespace ``ns`` enslaving ``ports``; returns its ifindex.

        Frames reach a bridge port from a live-frames generator only as XDP frames, so each
        port gets GRO switched on (see :meth:`set_gro`).
        """
        from pyroute2 import NetNS

        try:
            with NetNS(self.ns_name(ns)) as n:
                n.link("add", ifname=name, kind="bridge")
                br = n.link_lookup(ifname=name)[0]
                for port in ports:
                    found = n.link_lookup(ifname=port)
                    if not found:
                        raise TestbedError(f"no interface {port!r} in namespace {ns!r}")
                    n.link("set", index=found[0], master=br)
                n.link("set", index=br, state="up")
        except TestbedError:
            raise
        except Exception as e:  # pyroute2's NetlinkError is not an OSError
            raise TestbedError(f"cannot build bridge {ns}/{name}: {e}") from e
        for port in ports:
            self.set_gro(ns, port, True)
        return br

    def neighbour(self, ns: str, ifname: str, ip: str, mac: str) -> None:
        """A permanent neighbour entry, so traffic needs no ARP/ND (e.g. towards a sink)."""
        from pyroute2 import NetNS

        with NetNS(self.ns_name(ns)) as n:
            index = n.link_lookup(ifname=ifname)[0]
            n.neigh("replace", dst=ip, lladdr=mac, ifindex=index, state=0x80)  # NUD_PERMANENT

    def route(self, ns: str, dst: str, gateway: str) -> None:
        from pyroute2 import NetNS

        net = ipaddress.ip_network(dst, strict=False)
        check_address(f"{net.network_address}/{net.prefixlen}")
        with NetNS(self.ns_name(ns)) as n:
            n.route("add", dst=str(net), gateway=gateway)

    def set_gro(self, ns: str, ifname: str, on: bool = True) -> None:
        """Switch GRO on a veth end (ETHTOOL_SGRO ioctl).

        A veth end with GRO on runs NAPI, so it accepts XDP frames (``XDP_TX`` or live-frame
        transmissions from its peer) even without a native XDP program of its own, and hands
        them to the stack: generic XDP, TC and netfilter then see them.
        """
        import fcntl
        import socket
        import struct

        def ioctl() -> None:
            val = ctypes.create_string_buffer(struct.pack("II", 0x2C, int(on)))  # ETHTOOL_SGRO
            ifr = bytearray(struct.pack("16sQ", ifname.encode(), ctypes.addressof(val)))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                fcntl.ioctl(s.fileno(), 0x8946, ifr)  # SIOCETHTOOL

        try:
            self.call(ns, ioctl)
        except OSError as e:
            raise TestbedError(f"cannot set GRO on {ns}/{ifname}: {e}") from e

    def sysctl(self, ns: str, key: str, value: str) -> None:
        def write() -> None:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        self.call(ns, write)

    # -- running things inside -----------------------------------------------------------
    def thread(self, ns: str) -> NamespaceThread:
        if ns not in self._threads:
            self._threads[ns] = NamespaceThread(self.ns_name(ns))
        return self._threads[ns]

    def call(self, ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` inside namespace ``ns`` and return its result."""
        return self.thread(ns).call(fn, *args, **kwargs)

    def exec(self, ns: str, argv: list[str], timeout: float = 30,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside namespace ``ns`` (``ip netns exec``), bounded by ``timeout``."""
        proc = subprocess.run(["ip", "netns", "exec", self.ns_name(ns), *argv],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise TestbedError(f"{' '.join(argv)} in {ns} failed ({proc.returncode}):"
                               f" {proc.stderr.strip()}")
        return proc

    def popen(self, ns: str, argv: list[str], **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.ns_name(ns), *argv], **kw)


def pair(tag: str | None = None, *, mtu: int | None = None, queues: int = 1) -> Testbed:
    """The common bed: namespaces ``gen`` and ``sink`` joined by ``veth0 <-> veth1``.

    IPv4 198.18.0.1/24 and 198.18.0.2/24, IPv6 2001:db8::1/64 and 2001:db8::2/64.
    Use as ``with pair() as tb: ...``; the interfaces are ``tb.interfaces[("gen","veth0")]``.
    """
    tb = Testbed(tag)
    try:
        tb.namespace("gen")
        tb.namespace("sink")
        tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.0.1/24", "198.18.0.2/24"),
                ipv6=("2001:db8::1/64", "2001:db8::2/64"), mtu=mtu, queues=queues)
    except BaseException:
        tb.close()
        raise
    return tb


__all__ = ["Interface", "NamespaceThread", "Testbed", "TestbedError", "check_address", "pair",
           "remove_stale"]
