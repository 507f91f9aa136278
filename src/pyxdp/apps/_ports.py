"""What the multi-port apps (router, switch) share: a set of Ethernet ports in one network
namespace, one program instance on every port, pinned maps and links, and a saved state that
any later process reopens.

Pins: ``<pin_root>/netns<inode>/`` holds the maps; ``<pin_root>/<iface>@netns<inode>/link``
each port's link (the layout ``pyxdp status`` recognises as an app's).  The state is
``<state_root>/netns<inode>/state.json``.  Interfaces are resolved in the calling thread's
network namespace (the CLI's ``--netns`` runs the control plane inside one).

A subclass names its program, maps, roots and error class, and says how to load itself
(:meth:`PortApp._load`); an app that can be a chain stage (``STAGE``) also gives the spec of
its stage (:meth:`PortApp._stage_spec`).
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
from typing import Any, ClassVar, TypeVar

from pyxdp import xdp
from pyxdp.apps._state import locked, write_atomic
from pyxdp.backend import LoadedCollection
from pyxdp.compiler import CompiledObject
from pyxdp.compiler.codecs import apply_codecs
from pyxdp.errors import PyxdpError
from pyxdp.kernel import DEFAULT_BPFFS, Link, Map, ensure_bpffs, is_bpffs
from pyxdp.spec import ObjectSpec

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
SIOCGIFHWADDR = 0x8927

A = TypeVar("A", bound="PortApp")


@dataclass(frozen=True)
class Port:
    name: str
    ifindex: int
    # the pyxdp chain this port runs the app in, as its stage: {"pin_root", "state_root"}
    # (None: the port has a link of its own)
    chain: Any = field(default=None, compare=False)


def netns_inode() -> int:
    """The calling thread's network namespace (its inode number)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def hw_address(name: str) -> tuple[int, bytes]:
    """(ARPHRD_* type, hardware address) of ``name`` (SIOCGIFHWADDR, in the calling
    thread's namespace)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifr = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("16s16x", name.encode()))
    return int(struct.unpack_from("H", ifr, 16)[0]), bytes(ifr[18:24])


def check_ports(ifaces: Any, error: type[PyxdpError], app: str, why_ethernet: str, *,
                allow_mtu_mismatch: bool = False, chained: frozenset[str] = frozenset(),
                mtu_hint: str = "", mode: str | None = None) -> list[Port]:
    """Resolve and validate a port list before anything is loaded: every name an Ethernet
    interface of this namespace, none given twice, none running XDP already (unless it
    runs a pyxdp chain the app joins: ``chained``), one MTU for all, and, where the app
    will run in native mode (``mode`` native, or None on a driver with native XDP), a
    driver that has native XDP and transmits redirected frames.  Errors are ``error``s
    that name the port and the problem."""
    want = xdp.AttachMode.parse(mode)
    if isinstance(ifaces, str) or not ifaces:
        raise error(f"give the {app} a list of one or more interfaces")
    ports: list[Port] = []
    seen: dict[int, str] = {}
    for name in ifaces:
        if not isinstance(name, str):
            raise error(f"interface names are strings, got {name!r}")
        try:
            st = xdp.status(name)
        except xdp.XdpError as e:
            raise error(f"port {name!r}: {e}; every port must be in the {app}'s network"
                        " namespace (use --netns NS for another one)") from None
        if st.ifindex in seen:
            other = seen[st.ifindex]
            what = "given twice" if other == name else f"the same interface as {other!r}"
            raise error(f"duplicate port {name!r}: {what}")
        try:
            hw, _ = hw_address(name)
        except OSError as e:
            raise error(f"port {name!r}: cannot read its link type: {e}") from None
        if hw != ARPHRD_ETHER:
            kind = ("a loopback device" if hw == ARPHRD_LOOPBACK
                    else f"link type {hw}, not Ethernet")
            raise error(f"port {name!r} is {kind}: {why_ethernet}")
        _check_xdp_features(name, st, want, error, app)
        if st.attachments and name not in chained:
            a = st.attachments[0]
            raise error(f"port {name!r} already runs XDP program {a.prog_name!r}"
                        f" (id {a.prog_id}, {a.mode.value}); detach it first")
        seen[st.ifindex] = name
        ports.append(Port(name, st.ifindex))
    mtus = {p.name: xdp.status(p.ifindex).mtu for p in ports}
    if len(set(mtus.values())) > 1 and not allow_mtu_mismatch:
        shown = ", ".join(f"{n} {m}" for n, m in mtus.items())
        raise error(f"MTU mismatch between ports ({shown}): set the same MTU on all"
                    f" ports{mtu_hint}")
    return ports


def _check_xdp_features(name: str, st: Any, want: Any, error: type[PyxdpError],
                        app: str) -> None:
    """Refuse a port the app cannot run on natively (what the kernel reports in the netdev
    netlink family; nothing is checked on kernels without it)."""
    try:
        feats = xdp.features(st.ifindex)
    except xdp.XdpError:
        return
    if feats is None or want == xdp.AttachMode.GENERIC:
        return
    native = bool(feats & xdp.XdpFeature.BASIC)
    if want == xdp.AttachMode.NATIVE and not native:
        raise error(f"port {name!r} ({st.kind or 'device'}) has no native XDP support in"
                    " its driver: use generic mode (--mode generic), which runs after the"
                    " kernel builds an skb")
    if native and not feats & xdp.XdpFeature.NDO_XMIT:
        hint = (": a veth transmits XDP frames only while its peer runs an XDP program or"
                " has GRO on (ethtool -K PEER gro on)" if st.kind == "veth" else
                ": its driver has no ndo_xdp_xmit; use generic mode (--mode generic)")
        raise error(f"port {name!r} cannot transmit frames the {app} redirects to it"
                    f" (no XDP_REDIRECT target support){hint}")


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


class PortApp:
    """An app of one network namespace running on a set of ports.  Build a subclass's
    instance with its ``attach`` (which calls :meth:`_attach`) or :meth:`open`."""

    APP: ClassVar[str]                 # "router"
    PIN_ROOT: ClassVar[str]
    STATE_ROOT: ClassVar[str]
    ERROR: ClassVar[type[PyxdpError]]
    PROGRAM: ClassVar[str]
    MAPS: ClassVar[tuple[str, ...]]
    STAGE: ClassVar[str | None] = None  # the chain stage name (None: never a stage)
    VERSION: ClassVar[int] = 1
    WHY_ETHERNET: ClassVar[str] = "it needs an Ethernet device with XDP support"
    MTU_HINT: ClassVar[str] = ""

    def __init__(self, ports: list[Port], mode: str | None, options: dict[str, Any],
                 pin_dir: str, state_dir: str, pin_root: str) -> None:
        self.ports = ports
        self.mode = mode
        self.options = options
        self.pin_dir = pin_dir
        self.state_dir = state_dir
        self.pin_root = pin_root
        self._maps: dict[str, Any] | None = None

    # -- what a subclass provides -------------------------------------------------------------
    @classmethod
    def _compiled(cls) -> CompiledObject:
        raise NotImplementedError

    @classmethod
    def _load(cls, ports: list[Port], pin_dir: str, options: dict[str, Any]
              ) -> LoadedCollection:
        """Load the app into the kernel with its maps pinned under ``pin_dir``, filled for
        ``ports``; nothing attached."""
        raise NotImplementedError

    @classmethod
    def _stage_spec(cls, ports: list[Port], options: dict[str, Any]) -> ObjectSpec:
        raise NotImplementedError

    @classmethod
    def _check(cls, ifaces: Any, allow_mtu_mismatch: bool, chained: frozenset[str],
               mode: str | None) -> list[Port]:
        return check_ports(ifaces, cls.ERROR, cls.APP, cls.WHY_ETHERNET,
                           allow_mtu_mismatch=allow_mtu_mismatch, chained=chained,
                           mtu_hint=cls.MTU_HINT, mode=mode)

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def _attach(cls: type[A], ifaces: Any, mode: str | None, options: dict[str, Any], *,
                allow_mtu_mismatch: bool = False, pin_root: str | None = None,
                state_root: str | None = None, chain_roots: Any = False,
                priority: int = 90) -> A:
        """Validate, load, attach to every port (or join the port's pyxdp chain as stage
        ``STAGE``), pin, save the state.  On any error nothing is left behind."""
        pin_root = pin_root or cls.PIN_ROOT
        state_root = state_root or cls.STATE_ROOT
        if mode is not None:
            xdp.AttachMode.parse(mode)
        ns = netns_inode()
        pin_dir = os.path.join(pin_root, f"netns{ns}")
        state_dir = os.path.join(state_root, f"netns{ns}")
        taken = (f"this network namespace already has a pyxdp {cls.APP} ({state_dir}):"
                 f" {cls.__name__}.open it, or detach it first")
        if _live_ports(state_dir, pin_root, ns, cls.STAGE):   # checked again under the lock
            raise cls.ERROR(taken)
        names = list(ifaces) if not isinstance(ifaces, str) else ifaces
        # ports running a pyxdp chain take the app as a stage (their XDP program is the
        # chain's root): the check lets those through
        chains = {} if (cls.STAGE is None or chain_roots is False
                        or isinstance(names, str)) else {
            n: ch for n in names if isinstance(n, str)
            and (ch := _chain_of(n, chain_roots)) is not None}
        ports = cls._check(names, allow_mtu_mismatch, frozenset(chains), mode)
        if pin_root.startswith(DEFAULT_BPFFS + "/"):
            ensure_bpffs()
        elif not is_bpffs(os.path.dirname(pin_root.rstrip("/")) or "/"):
            raise cls.ERROR(f"pin_root {pin_root} is not on a bpf filesystem")
        with locked(state_dir, create=True):
            if os.path.exists(os.path.join(state_dir, "state.json")):
                if _live_ports(state_dir, pin_root, ns, cls.STAGE):
                    raise cls.ERROR(taken)
                # an app whose links all died (its namespace was deleted and the inode
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
                coll = cls._load(ports, pin_dir, options)
                prog: Any = coll.programs[cls.PROGRAM]
                spec = None
                for p in ports:
                    ch = chains.get(p.name)
                    if ch is not None:
                        if ch.has_stage(cls.STAGE):
                            raise cls.ERROR(f"the chain on {p.name!r} has a stage"
                                            f" {cls.STAGE!r} already")
                        if spec is None:
                            spec = cls._stage_spec(ports, options)
                        ch.set_stage(cls.STAGE, spec, {n: m for n, m in coll.maps.items()
                                                       if not n.startswith(".")},
                                     priority=priority, continue_on="pass")
                        staged.append(ch)
                        continue
                    try:
                        att = xdp.attach(p.name, prog, mode)
                    except xdp.XdpError as e:
                        raise cls.ERROR(f"port {p.name!r}: cannot attach XDP: {e}") from e
                    atts.append(att)
                    if att.link is None:
                        raise cls.ERROR(f"port {p.name!r}: attached without a bpf_link")
                    d = _link_dir(pin_root, p.name, ns)
                    shutil.rmtree(d, ignore_errors=True)
                    os.makedirs(d)
                    link_dirs.append(d)
                    att.link.pin(os.path.join(d, "link"))
                ports = [Port(p.name, p.ifindex, None if p.name not in chains else {
                    "pin_root": os.path.dirname(chains[p.name].pin_dir),
                    "state_root": os.path.dirname(chains[p.name].state_dir)})
                    for p in ports]
                state = {**options, "version": cls.VERSION, "netns": ns, "mode": mode,
                         "ports": [{"name": p.name, "ifindex": p.ifindex, "chain": p.chain}
                                   for p in ports],
                         "prog_id": prog.id}
                write_atomic(os.path.join(state_dir, "state.json"), json.dumps(state))
            except BaseException:
                for ch in staged:
                    with contextlib.suppress(Exception):
                        ch.remove(cls.STAGE)
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
        return cls(ports, mode, options, pin_dir, state_dir, pin_root)

    @classmethod
    def open(cls: type[A], pin_root: str | None = None, *, state_root: str | None = None
             ) -> A:
        """Reopen the app of the calling thread's namespace."""
        pin_root = pin_root or cls.PIN_ROOT
        state_root = state_root or cls.STATE_ROOT
        ns = netns_inode()
        state_dir = os.path.join(state_root, f"netns{ns}")
        path = os.path.join(state_dir, "state.json")
        try:
            with open(path) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise cls.ERROR(f"no pyxdp {cls.APP} in this network namespace (no {path})"
                            ) from None
        except ValueError as e:
            raise cls.ERROR(f"corrupt {cls.APP} state {path}: {e}") from None
        if not isinstance(d, dict) or d.get("version") != cls.VERSION:
            got = d.get("version") if isinstance(d, dict) else None
            raise cls.ERROR(f"{path}: {cls.APP} state version {got!r}, expected"
                            f" {cls.VERSION}")
        ports = [Port(p["name"], p["ifindex"], p.get("chain")) for p in d["ports"]]
        if not _live_ports(state_dir, pin_root, ns, cls.STAGE):
            raise cls.ERROR(f"the {cls.APP} state {path} is stale: none of its ports'"
                            f" links is attached any more (interfaces deleted?); `pyxdp"
                            f" {cls.APP} detach --force` ({cls.__name__}.force_detach)"
                            " clears it")
        options = {k: v for k, v in d.items()
                   if k not in ("version", "netns", "mode", "ports", "prog_id")}
        return cls(ports, d["mode"], options, os.path.join(pin_root, f"netns{ns}"),
                   state_dir, pin_root)

    @classmethod
    def force_detach(cls, pin_root: str | None = None, *, state_root: str | None = None
                     ) -> list[str]:
        """Recovery when :meth:`open` refuses (stale or unreadable state): detach whatever
        port links are still pinned and remove the pins and the state of this namespace's
        app.  Returns what was done."""
        pin_root = pin_root or cls.PIN_ROOT
        state_root = state_root or cls.STATE_ROOT
        ns = netns_inode()
        state_dir = os.path.join(state_root, f"netns{ns}")
        done: list[str] = []
        if not os.path.isdir(state_dir):
            return done
        with locked(state_dir, create=True):
            for p in _state_ports(state_dir):
                if p.chain is not None:
                    ch = _chain_of(p.name, p.chain)
                    if ch is not None and ch.has_stage(cls.STAGE):
                        with contextlib.suppress(Exception):
                            ch.remove(cls.STAGE)
                            done.append(f"removed stage {cls.STAGE!r} from the chain on"
                                        f" {p.name}")
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
        """Release this process's handles; the app keeps running (pinned)."""
        for m in (self._maps or {}).values():
            m.close()
        self._maps = None

    def __enter__(self: A) -> A:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detach(self) -> list[str]:
        """Detach every port and remove the pins and the saved state; returns what was
        done.  Ports whose link is gone (the interface was deleted) are skipped."""
        done: list[str] = []
        self.close()
        ns = netns_inode()
        stage = self.STAGE
        with locked(self.state_dir, create=True):
            for p in self.ports:
                if p.chain is not None:
                    ch = _chain_of(p.name, p.chain)
                    if ch is not None and ch.has_stage(stage):
                        ch.remove(stage)
                        done.append(f"{p.name}: removed stage {stage!r} from its chain")
                    else:
                        done.append(f"{p.name}: its chain has no stage {stage!r}")
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
            info = self._compiled().info
            out: dict[str, Any] = {}
            try:
                for n in self.MAPS:
                    out[n] = apply_codecs(Map.from_pin(os.path.join(self.pin_dir, n)),
                                          info.maps[n])
            except OSError as e:
                for m in out.values():
                    m.close()
                raise self.ERROR(f"the {self.APP}'s pinned maps are gone ({e}): was it"
                                 " detached?") from None
            self._maps = out
        return self._maps[name]

    def program_ids(self) -> dict[str, int]:
        """The program each port's link runs (the same program on every port)."""
        ns = netns_inode()
        out = {}
        for p in self.ports:
            if p.chain is not None:
                ch = _chain_of(p.name, p.chain)
                out[p.name] = ch.stage_program_id(self.STAGE) if ch is not None else 0
                continue
            with Link.from_pin(os.path.join(_link_dir(self.pin_root, p.name, ns), "link")
                               ) as link:
                out[p.name] = link.info().prog_id
        return out


def _state_ports(state_dir: str) -> list[Port]:
    try:
        with open(os.path.join(state_dir, "state.json")) as f:
            d = json.load(f)
        return [Port(p["name"], p["ifindex"], p.get("chain")) for p in d["ports"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _live_ports(state_dir: str, pin_root: str, ns: int, stage: str | None) -> list[str]:
    """Ports of the saved app whose pinned link still holds their interface (or whose
    chain still has the app's stage)."""
    live = []
    for p in _state_ports(state_dir):
        if p.chain is not None:
            ch = _chain_of(p.name, p.chain)
            if ch is not None and ch.has_stage(stage):
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
    """Remove a dead app's pins and state (under the state lock: keeps the lock)."""
    for p in _state_ports(state_dir):
        shutil.rmtree(_link_dir(pin_root, p.name, ns), ignore_errors=True)
    shutil.rmtree(os.path.join(pin_root, f"netns{ns}"), ignore_errors=True)
    for f in os.listdir(state_dir):
        if f != "lock":
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(state_dir, f))


def _link_dir(pin_root: str, iface: str, ns: int) -> str:
    return os.path.join(pin_root, f"{iface}@netns{ns}")


__all__ = ["Port", "PortApp", "check_ports", "hw_address", "netns_inode"]
