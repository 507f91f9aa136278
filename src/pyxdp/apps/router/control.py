"""The router's control plane: attach to a set of ports, read counters, detach.

One router per network namespace.  One program instance runs on every port (each port has
its own XDP link, so every port can receive redirected frames and forward what it
receives); its maps and the links are pinned on bpffs, and the port list is saved in
``<state_root>/netns<inode>/state.json``, so the router keeps forwarding when the control
plane exits and any later process reopens it with :meth:`Router.open`.

Pins: ``<pin_root>/netns<inode>/`` holds the maps (``stats``, ``egress``, ``ports``,
``tx_ports``); ``<pin_root>/<iface>@netns<inode>/link`` holds each port's link (the layout
``pyxdp status`` recognises as an app's).  Interfaces are resolved in the calling thread's
network namespace (``--netns`` runs the control plane inside one).

The data plane has no routing table of its own: it asks the kernel's FIB at every packet,
so ``ip route`` and ``ip neigh`` changes take effect at once, without a reload.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from pyxdp import xdp
from pyxdp.apps._state import locked, write_atomic
from pyxdp.apps.router import dataplane as dp
from pyxdp.apps.router.program import MAPS, PROGRAM, compiled, load_router, router_spec
from pyxdp.compiler.codecs import apply_codecs
from pyxdp.errors import PyxdpError
from pyxdp.kernel import DEFAULT_BPFFS, KernelBackend, Link, Map, ensure_bpffs, is_bpffs

PIN_ROOT = "/sys/fs/bpf/pyxdp-router"
STATE_ROOT = "/run/pyxdp-router"
VERSION = 1
ARPHRD_ETHER = 1
SIOCGIFHWADDR = 0x8927

#: counter name -> index in the data plane's ``stats`` map
REASONS: dict[str, int] = {
    "forwarded": dp.R_FORWARDED,
    "pass_not_ip": dp.R_NOT_IP,
    "pass_malformed": dp.R_MALFORMED,
    "pass_ttl": dp.R_TTL,
    "pass_ip_options": dp.R_OPTIONS,
    "pass_fragment": dp.R_FRAGMENT,
    "pass_local_or_no_route": dp.R_LOCAL,
    "pass_no_neighbour": dp.R_NO_NEIGH,
    "pass_frag_needed": dp.R_FRAG_NEEDED,
    "pass_unreachable": dp.R_UNREACHABLE,
    "pass_forwarding_disabled": dp.R_FWD_DISABLED,
    "pass_fib_other": dp.R_OTHER,
    "pass_egress_not_a_port": dp.R_NOT_PORT,
}


class RouterError(PyxdpError):
    """The router cannot do what was asked (bad ports, none attached, one already...)."""


@dataclass(frozen=True)
class Port:
    name: str
    ifindex: int
    # the pyxdp chain this port runs the router in, as stage "router": {"pin_root",
    # "state_root"} (None: the port has a link of its own)
    chain: Any = field(default=None, compare=False)


STAGE = "router"


def _chain_of(iface: str, roots: Any) -> Any:
    """The pyxdp chain on ``iface`` (roots: None = the default chain roots), or None."""
    from pyxdp.apps.chain import PIN_ROOT as CPIN
    from pyxdp.apps.chain import STATE_ROOT as CSTATE
    from pyxdp.apps.chain import Chain, ChainError

    r = roots or {"pin_root": CPIN, "state_root": CSTATE}
    try:
        return Chain.open(iface, r["pin_root"], r["state_root"])
    except (ChainError, OSError):
        return None


def _netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _hw_type(name: str) -> int:
    """ARPHRD_* type of ``name`` (SIOCGIFHWADDR, in the calling thread's namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", name.encode()))
    return int(struct.unpack_from("H", ifr, 16)[0])


def check_ports(ifaces: list[str], *, allow_mtu_mismatch: bool = False,
                chained: frozenset[str] = frozenset()) -> list[Port]:
    """Resolve and validate the port list (clear errors, before anything is loaded)."""
    if isinstance(ifaces, str) or not ifaces:
        raise RouterError("give the router a list of one or more interfaces")
    ports: list[Port] = []
    seen: dict[int, str] = {}
    for name in ifaces:
        if not isinstance(name, str):
            raise RouterError(f"interface names are strings, got {name!r}")
        try:
            st = xdp.status(name)
        except xdp.XdpError as e:
            raise RouterError(f"port {name!r}: {e}; every port must be in the router's"
                              " network namespace (use --netns NS for another one)") from None
        if st.ifindex in seen:
            other = seen[st.ifindex]
            what = "given twice" if other == name else f"the same interface as {other!r}"
            raise RouterError(f"duplicate port {name!r}: {what}")
        try:
            hw = _hw_type(name)
        except OSError as e:
            raise RouterError(f"port {name!r}: cannot read its link type: {e}") from None
        if hw != ARPHRD_ETHER:
            kind = "a loopback device" if hw == 772 else f"link type {hw}, not Ethernet"
            raise RouterError(f"port {name!r} is {kind}: the router rewrites Ethernet"
                              " headers and transmits with XDP redirect, which needs an"
                              " Ethernet device with XDP support")
        if st.attachments and name not in chained:
            a = st.attachments[0]
            raise RouterError(f"port {name!r} already runs XDP program {a.prog_name!r}"
                              f" (id {a.prog_id}, {a.mode.value}); detach it first")
        seen[st.ifindex] = name
        ports.append(Port(name, st.ifindex))
    mtus = {p.name: xdp.status(p.ifindex).mtu for p in ports}
    if len(set(mtus.values())) > 1 and not allow_mtu_mismatch:
        shown = ", ".join(f"{n} {m}" for n, m in mtus.items())
        raise RouterError(f"MTU mismatch between ports ({shown}): set the same MTU on all"
                          " ports, or allow it (--allow-mtu-mismatch: larger packets then"
                          " go to the stack, which fragments or sends ICMP)")
    return ports


class Router:
    """The router of one network namespace.  Build with :meth:`attach` or :meth:`open`."""

    def __init__(self, ports: list[Port], mode: str | None, direct: bool, pin_dir: str,
                 state_dir: str, pin_root: str) -> None:
        self.ports = ports
        self.mode = mode
        self.direct = direct
        self.pin_dir = pin_dir
        self.state_dir = state_dir
        self.pin_root = pin_root
        self._maps: dict[str, Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def attach(cls, ifaces: list[str], mode: str | None = None, *, direct: bool = False,
               allow_mtu_mismatch: bool = False, pin_root: str = PIN_ROOT,
               state_root: str = STATE_ROOT, chain_roots: Any = None,
               priority: int = 90) -> Router:
        """Load the router and attach it to every interface of ``ifaces`` (``mode``: None
        lets the kernel choose, else ``native``/``generic``).  ``direct`` skips
        policy-routing rules (BPF_FIB_LOOKUP_DIRECT).

        A port that runs a pyxdp chain (under ``chain_roots``, a dict of ``pin_root`` and
        ``state_root``; None: the chain's defaults; False: never) gets the router as the
        chain's stage ``router`` at ``priority`` (late: after a filter) instead of a link
        of its own; it continues on PASS, what the stack must handle."""
        if mode is not None:
            xdp.AttachMode.parse(mode)
        ns = _netns()
        pin_dir = os.path.join(pin_root, f"netns{ns}")
        state_dir = os.path.join(state_root, f"netns{ns}")
        if _live_ports(state_dir, pin_root, ns):       # checked again under the lock
            raise RouterError(f"this network namespace already has a pyxdp router"
                              f" ({state_dir}): Router.open it, or detach it first")
        names = list(ifaces) if not isinstance(ifaces, str) else ifaces
        # ports running a pyxdp chain take the router as a stage (their XDP program is the
        # chain's root): the check below lets those through
        chains = {} if chain_roots is False or isinstance(names, str) else {
            n: ch for n in names if isinstance(n, str)
            and (ch := _chain_of(n, chain_roots)) is not None}
        ports = check_ports(names, allow_mtu_mismatch=allow_mtu_mismatch,
                            chained=frozenset(chains))
        if pin_root.startswith(DEFAULT_BPFFS + "/"):
            ensure_bpffs()
        elif not is_bpffs(os.path.dirname(pin_root.rstrip("/")) or "/"):
            raise RouterError(f"pin_root {pin_root} is not on a bpf filesystem")
        with locked(state_dir, create=True):
            if os.path.exists(os.path.join(state_dir, "state.json")):
                if _live_ports(state_dir, pin_root, ns):
                    raise RouterError(f"this network namespace already has a pyxdp router"
                                      f" ({state_dir}): Router.open it, or detach it"
                                      " first")
                # a router whose links all died (its namespace was deleted and the inode
                # number reused, or its interfaces were): nothing runs, clear its leftovers
                _clear(state_dir, pin_root, ns)
            only_lock = os.listdir(state_dir) == ["lock"]
            shutil.rmtree(pin_dir, ignore_errors=True)   # leftovers of a crashed attach
            os.makedirs(pin_dir)
            coll = None
            atts: list[Any] = []
            staged: list[Any] = []
            link_dirs: list[str] = []
            try:
                coll = load_router([p.ifindex for p in ports], KernelBackend(),
                                   direct=direct, pin_dir=pin_dir)
                prog: Any = coll.programs[PROGRAM]
                chained = chains
                spec = None
                for p in ports:
                    ch = chained.get(p.name)
                    if ch is not None:
                        if ch.has_stage(STAGE):
                            raise RouterError(f"the chain on {p.name!r} has a stage"
                                              f" {STAGE!r} already")
                        if spec is None:
                            spec = router_spec(max(q.ifindex for q in ports), direct=direct)
                        ch.set_stage(STAGE, spec, {n: m for n, m in coll.maps.items()
                                                   if not n.startswith(".")},
                                     priority=priority, continue_on="pass")
                        staged.append(ch)
                        continue
                    try:
                        att = xdp.attach(p.name, prog, mode)
                    except xdp.XdpError as e:
                        raise RouterError(f"port {p.name!r}: cannot attach XDP: {e}") from e
                    atts.append(att)
                    if att.link is None:
                        raise RouterError(f"port {p.name!r}: attached without a bpf_link")
                    d = _link_dir(pin_root, p.name, ns)
                    shutil.rmtree(d, ignore_errors=True)
                    os.makedirs(d)
                    link_dirs.append(d)
                    att.link.pin(os.path.join(d, "link"))
                ports = [Port(p.name, p.ifindex, None if p.name not in chained else {
                    "pin_root": os.path.dirname(chained[p.name].pin_dir),
                    "state_root": os.path.dirname(chained[p.name].state_dir)})
                    for p in ports]
                state = {"version": VERSION, "netns": ns, "mode": mode, "direct": direct,
                         "ports": [{"name": p.name, "ifindex": p.ifindex, "chain": p.chain}
                                   for p in ports],
                         "prog_id": prog.id}
                write_atomic(os.path.join(state_dir, "state.json"), json.dumps(state))
            except BaseException:
                for ch in staged:
                    with contextlib.suppress(Exception):
                        ch.remove(STAGE)
                for att in atts:
                    with contextlib.suppress(OSError):
                        att.detach()
                for d in link_dirs:
                    shutil.rmtree(d, ignore_errors=True)
                shutil.rmtree(pin_dir, ignore_errors=True)
                if only_lock:
                    shutil.rmtree(state_dir, ignore_errors=True)
                raise
            finally:
                if coll is not None:
                    coll.close()      # the links and pins keep program and maps alive
                for att in atts:
                    if att.link is not None:
                        att.link.close()
        return cls(ports, mode, direct, pin_dir, state_dir, pin_root)

    @classmethod
    def open(cls, pin_root: str = PIN_ROOT, *, state_root: str = STATE_ROOT) -> Router:
        """Reopen the router of the calling thread's namespace."""
        ns = _netns()
        state_dir = os.path.join(state_root, f"netns{ns}")
        path = os.path.join(state_dir, "state.json")
        try:
            with open(path) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise RouterError(f"no pyxdp router in this network namespace (no {path})"
                              ) from None
        except ValueError as e:
            raise RouterError(f"corrupt router state {path}: {e}") from None
        if not isinstance(d, dict) or d.get("version") != VERSION:
            raise RouterError(f"{path}: router state version {d.get('version')!r},"
                              f" expected {VERSION}")
        ports = [Port(p["name"], p["ifindex"], p.get("chain")) for p in d["ports"]]
        if not _live_ports(state_dir, pin_root, ns):
            raise RouterError(f"the router state {path} is stale: none of its ports'"
                              " links is attached any more (interfaces deleted?); `pyxdp"
                              " router detach --force` (Router.force_detach) clears it")
        return cls(ports, d["mode"], d["direct"], os.path.join(pin_root, f"netns{ns}"),
                   state_dir, pin_root)

    @classmethod
    def force_detach(cls, pin_root: str = PIN_ROOT, *, state_root: str = STATE_ROOT
                     ) -> list[str]:
        """Recovery when :meth:`open` refuses (stale or unreadable state): detach whatever
        port links are still pinned and remove the pins and the state of this namespace's
        router.  Returns what was done."""
        ns = _netns()
        state_dir = os.path.join(state_root, f"netns{ns}")
        done: list[str] = []
        if not os.path.isdir(state_dir):
            return done
        with locked(state_dir, create=True):
            for p in _state_ports(state_dir):
                if p.chain is not None:
                    ch = _chain_of(p.name, p.chain)
                    if ch is not None and ch.has_stage(STAGE):
                        with contextlib.suppress(Exception):
                            ch.remove(STAGE)
                            done.append(f"removed stage {STAGE!r} from the chain on {p.name}")
                    continue
                pin = os.path.join(_link_dir(pin_root, p.name, ns), "link")
                with contextlib.suppress(OSError), Link.from_pin(pin) as link:
                    link.detach()
                    done.append(f"detached {p.name}")
            _clear(state_dir, pin_root, ns)
            shutil.rmtree(state_dir, ignore_errors=True)
            done.append(f"removed {state_dir}")
        for root in (pin_root, state_root):
            with contextlib.suppress(OSError):
                os.rmdir(root)
        return done

    def close(self) -> None:
        """Release this process's handles; the router keeps running (pinned)."""
        for m in (self._maps or {}).values():
            m.close()
        self._maps = None

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detach(self) -> list[str]:
        """Detach every port and remove the pins and the saved state; returns what was
        done.  Ports whose link is gone (the interface was deleted) are skipped."""
        done: list[str] = []
        self.close()
        ns = _netns()
        with locked(self.state_dir, create=True):
            for p in self.ports:
                if p.chain is not None:
                    ch = _chain_of(p.name, p.chain)
                    if ch is not None and ch.has_stage(STAGE):
                        ch.remove(STAGE)
                        done.append(f"{p.name}: removed stage {STAGE!r} from its chain")
                    else:
                        done.append(f"{p.name}: its chain has no stage {STAGE!r}")
                    continue
                d = _link_dir(self.pin_root, p.name, ns)
                try:
                    with Link.from_pin(os.path.join(d, "link")) as link:
                        link.detach()
                    done.append(f"detached {p.name}")
                except OSError as e:
                    done.append(f"{p.name}: no link to detach ({e.strerror or e})")
                shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(self.pin_dir, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)
        for root in (self.pin_root, os.path.dirname(self.state_dir)):
            with contextlib.suppress(OSError):
                os.rmdir(root)
        return done

    # -- observation -------------------------------------------------------------------------
    def _map(self, name: str) -> Any:
        if self._maps is None:
            info = compiled().info
            out: dict[str, Any] = {}
            try:
                for n in MAPS:
                    out[n] = apply_codecs(Map.from_pin(os.path.join(self.pin_dir, n)),
                                          info.maps[n])
            except OSError as e:
                for m in out.values():
                    m.close()
                raise RouterError(f"the router's pinned maps are gone ({e}): was it"
                                  " detached?") from None
            self._maps = out
        return self._maps[name]

    def stats(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) per reason (``forwarded`` and every ``pass_*``), summed over
        CPUs."""
        m = self._map("stats")
        out = {}
        for name, idx in REASONS.items():
            per_cpu = m[idx]
            out[name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def egress(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) forwarded out of each port, summed over CPUs."""
        m = self._map("egress")
        out = {}
        for p in self.ports:
            per_cpu = m[p.ifindex]
            out[p.name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def program_ids(self) -> dict[str, int]:
        """The program each port's link runs (the same program on every port)."""
        ns = _netns()
        out = {}
        for p in self.ports:
            if p.chain is not None:
                ch = _chain_of(p.name, p.chain)
                out[p.name] = ch.stage_program_id(STAGE) if ch is not None else 0
                continue
            with Link.from_pin(os.path.join(_link_dir(self.pin_root, p.name, ns), "link")
                               ) as link:
                out[p.name] = link.info().prog_id
        return out

    def __repr__(self) -> str:
        return f"<Router ports={[p.name for p in self.ports]} direct={self.direct}>"


def _state_ports(state_dir: str) -> list[Port]:
    try:
        with open(os.path.join(state_dir, "state.json")) as f:
            d = json.load(f)
        return [Port(p["name"], p["ifindex"], p.get("chain")) for p in d["ports"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _live_ports(state_dir: str, pin_root: str, ns: int) -> list[str]:
    """Ports of the saved router whose pinned link still holds their interface."""
    live = []
    for p in _state_ports(state_dir):
        if p.chain is not None:
            ch = _chain_of(p.name, p.chain)
            if ch is not None and ch.has_stage(STAGE):
                live.append(p.name)
            continue
        try:
            with Link.from_pin(os.path.join(_link_dir(pin_root, p.name, ns), "link")) as lk:
                if lk.info().ifindex == p.ifindex:
                    live.append(p.name)
        except OSError:
            continue
    return live


def _clear(state_dir: str, pin_root: str, ns: int) -> None:
    """Remove a dead router's pins and state (under the state lock: keeps the lock)."""
    for p in _state_ports(state_dir):
        shutil.rmtree(_link_dir(pin_root, p.name, ns), ignore_errors=True)
    shutil.rmtree(os.path.join(pin_root, f"netns{ns}"), ignore_errors=True)
    for f in os.listdir(state_dir):
        if f != "lock":
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(state_dir, f))


def _link_dir(pin_root: str, iface: str, ns: int) -> str:
    return os.path.join(pin_root, f"{iface}@netns{ns}")


__all__ = ["PIN_ROOT", "REASONS", "STATE_ROOT", "Port", "Router", "RouterError",
           "check_ports"]
