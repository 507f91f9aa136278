"""Attach, replace, detach and query XDP programs on real interfaces.

bpf_link first (the attachment lives while the :class:`~pyxdp.kernel.Link` is held or
pinned, and can be replaced atomically), netlink ``IFLA_XDP`` as the fallback when a link
cannot be used, keeping atomic replace through ``IFLA_XDP_EXPECTED_FD``.  Every refusal is
explained: no such interface, mode not supported, MTU too large, something attached already
(which program, which mode, by link or not), a libxdp dispatcher that must not be clobbered.

Interfaces are looked up in the network namespace of the *calling thread* (see
:meth:`pyxdp.testbed.Testbed.call`).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntFlag
from typing import Any, TypeVar

from pyxdp.abi import (
    XDP_FLAGS_DRV_MODE,
    XDP_FLAGS_HW_MODE,
    XDP_FLAGS_REPLACE,
    XDP_FLAGS_SKB_MODE,
    XDP_FLAGS_UPDATE_IF_NOEXIST,
)
from pyxdp.errors import BpfError, PyxdpError
from pyxdp.xdp import _netlink as nl

DISPATCHER_NAMES = ("xdp_dispatcher",)
T = TypeVar("T")


class AttachMode(Enum):
    """Where the program runs: in the generic (skb) path, the driver, or the NIC."""

    GENERIC = "generic"   # aka skb mode: works everywhere, after the skb is built
    NATIVE = "native"     # aka drv mode: in the driver, before any allocation
    OFFLOAD = "offload"   # aka hw mode: on the NIC itself

    @property
    def flag(self) -> int:
        return {AttachMode.GENERIC: XDP_FLAGS_SKB_MODE, AttachMode.NATIVE: XDP_FLAGS_DRV_MODE,
                AttachMode.OFFLOAD: XDP_FLAGS_HW_MODE}[self]

    @classmethod
    def parse(cls, value: str | AttachMode | None) -> AttachMode | None:
        if value is None or isinstance(value, AttachMode):
            return value
        aliases = {"skb": "generic", "drv": "native", "hw": "offload", "xdpgeneric": "generic",
                   "xdpdrv": "native", "xdpoffload": "offload"}
        v = aliases.get(value.lower(), value.lower())
        try:
            return cls(v)
        except ValueError:
            raise XdpError(f"unknown XDP mode {value!r}: use generic, native or offload"
                           ) from None


_ATTACHED_MODE = {1: AttachMode.NATIVE, 2: AttachMode.GENERIC, 3: AttachMode.OFFLOAD}


class XdpError(PyxdpError, OSError):
    """An XDP attach/detach/query that cannot be done, with the reason spelled out."""

    def __init__(self, message: str, err: int = errno.EINVAL) -> None:
        OSError.__init__(self, err, message)

    def __str__(self) -> str:
        return str(self.strerror)


def ifindex_of(iface: str | int) -> int:
    """The ifindex of an interface name or number, in the calling thread's namespace."""
    if isinstance(iface, int):
        if iface <= 0:
            raise XdpError(f"bad ifindex {iface}", errno.ENODEV)
        return iface
    if not iface or len(iface) > 15 or "/" in iface or "\0" in iface:
        raise XdpError(f"bad interface name {iface!r}", errno.ENODEV)
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise XdpError(f"no such interface {iface!r} (in this network namespace)",
                       errno.ENODEV) from None


@dataclass(frozen=True)
class Attachment:
    """One program attached to an interface, as the kernel reports it."""

    ifindex: int
    ifname: str
    mode: AttachMode
    prog_id: int
    prog_name: str
    link_id: int        # 0: no link (netlink, ip link, xdp-loader); -1: ambiguous link

    @property
    def is_dispatcher(self) -> bool:
        return self.prog_name in DISPATCHER_NAMES


@dataclass(frozen=True)
class XdpStatus:
    ifindex: int
    ifname: str
    mtu: int
    kind: str
    attachments: tuple[Attachment, ...]

    def in_mode(self, mode: AttachMode) -> Attachment | None:
        for a in self.attachments:
            if a.mode == mode:
                return a
        return None


def _prog_info(prog_id: int) -> Any:
    """The ProgInfo of ``prog_id`` without loading the Program machinery (ISA, specs)."""
    from pyxdp.abi import Cmd
    from pyxdp.kernel._info import fd_by_id, prog_info

    with fd_by_id(Cmd.PROG_GET_FD_BY_ID, prog_id) as fd:
        return prog_info(fd)


def _prog_name(prog_id: int) -> str:
    try:
        return str(_prog_info(prog_id).name)
    except (BpfError, OSError):
        return "?"


AMBIGUOUS_LINK = -1


def _links_by_ifindex() -> dict[tuple[int, int], int]:
    """(ifindex, prog_id) -> link id for every XDP link in the system.

    Link info carries an ifindex but no network namespace, and ifindexes repeat across
    namespaces: when two links share a key, which one is ours cannot be told, and the key
    maps to :data:`AMBIGUOUS_LINK` (never guess: the other may be someone else's).
    """
    from pyxdp.kernel import list_links

    out: dict[tuple[int, int], int] = {}
    try:
        for li in list_links():
            if getattr(li, "ifindex", 0):
                key = (li.ifindex, li.prog_id)
                out[key] = AMBIGUOUS_LINK if key in out else li.id
    except (BpfError, OSError):
        pass
    return out


def status(iface: str | int) -> XdpStatus:
    """What XDP programs are attached to ``iface``, in which mode, and how."""
    idx = ifindex_of(iface)
    try:
        q = nl.query(idx)
    except nl.NetlinkError as e:
        raise XdpError(f"cannot query {iface!r}: {e}", e.errno or errno.EIO) from e
    links = _links_by_ifindex()
    atts = []
    for mode, pid in ((AttachMode.NATIVE, q.drv_prog_id), (AttachMode.GENERIC, q.skb_prog_id),
                      (AttachMode.OFFLOAD, q.hw_prog_id)):
        if pid:
            atts.append(Attachment(idx, q.ifname, mode, pid, _prog_name(pid),
                                   links.get((idx, pid), 0)))
    return XdpStatus(idx, q.ifname, q.mtu, q.kind, tuple(atts))


class XdpFeature(IntFlag):
    """``NETDEV_XDP_ACT_*``: what a device's driver does for XDP (netdev netlink)."""

    BASIC = 1            # native XDP: DROP, PASS, TX, ABORTED
    REDIRECT = 2         # its native programs can redirect
    NDO_XMIT = 4         # it transmits frames other devices redirect to it
    XSK_ZEROCOPY = 8
    HW_OFFLOAD = 16
    RX_SG = 32           # multi-buffer receive
    NDO_XMIT_SG = 64


def features(iface: str | int) -> XdpFeature | None:
    """The XDP features the kernel reports for ``iface`` (calling thread's namespace), or
    None on kernels without the netdev netlink family (before 6.3).  On veth, NDO_XMIT
    comes and goes with the peer: set while the peer runs XDP or has GRO on."""
    idx = ifindex_of(iface)
    try:
        bits = nl.xdp_features(idx)
    except nl.NetlinkError as e:
        raise XdpError(f"cannot query XDP features of {iface!r}: {e}", e.errno or errno.EIO
                       ) from e
    return None if bits is None else XdpFeature(bits)


def redirect_warnings(att: Attachment) -> list[str]:
    """Why frames ``att``'s program redirects through a devmap may never arrive: a target
    that does not exist in this namespace, a veth target (whose peer must run XDP), or a
    target without an XDP program (some drivers only accept redirected frames then)."""
    from pyxdp.abi import MapType
    from pyxdp.kernel import Map

    warnings: list[str] = []
    try:
        map_ids = _prog_info(att.prog_id).map_ids
    except OSError:
        return warnings
    for mid in map_ids:
        try:
            with Map.from_id(mid, value_type=bytes) as m:
                if m.type not in (MapType.DEVMAP, MapType.DEVMAP_HASH):
                    continue
                targets = {int.from_bytes(v[:4], "little") for v in m.values()}
        except (OSError, PyxdpError):
            continue
        for ifindex in sorted(t for t in targets if t):
            try:
                st = status(ifindex)
            except XdpError:
                warnings.append(f"redirect target ifindex {ifindex} does not exist here")
                continue
            if st.kind == "veth":
                warnings.append(f"redirect target {st.ifname} is a veth: frames redirected"
                                " there are dropped unless its peer runs an XDP program (or"
                                " has GRO on)")
            elif not st.attachments:
                warnings.append(f"redirect target {st.ifname} has no XDP program: some"
                                " drivers only accept redirected frames when one is loaded")
    return warnings


def in_netns(ns: str | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` run inside the named network namespace (an ``ip netns`` name), or
    right here when ``ns`` is None: interfaces are looked up where the thread runs."""
    if not ns:
        return fn(*args)
    import os

    from pyxdp.testbed import NETNS_DIR, NamespaceThread

    if not os.path.exists(os.path.join(NETNS_DIR, ns)):
        raise XdpError(f"no network namespace {ns!r} (see `ip netns list`)", errno.ENOENT)
    t = NamespaceThread(ns)
    try:
        return t.call(fn, *args)
    finally:
        t.close()


def _describe(a: Attachment) -> str:
    if a.link_id == AMBIGUOUS_LINK:
        how = "held by a bpf_link (which one is ambiguous across namespaces)"
    else:
        how = f"held by bpf_link {a.link_id}" if a.link_id else "attached via netlink"
    return f"program {a.prog_name!r} (id {a.prog_id}) in {a.mode.value} mode, {how}"


def _explain(err: OSError, iface: str, mode: AttachMode | None, st: XdpStatus | None,
             prog: Any) -> XdpError:
    code = err.errno or errno.EINVAL
    said = getattr(err, "extack", "")
    if code == errno.EPERM:
        return XdpError(f"attaching XDP to {iface} needs root or CAP_NET_ADMIN + CAP_BPF", code)
    if code == errno.EBUSY or code == errno.EEXIST:
        if st and st.attachments:
            return XdpError(f"{iface} already has {_describe(st.attachments[0])}; detach it"
                            " first or use replace", code)
        return XdpError(f"{iface} is busy: another XDP program is attached ({said})", code)
    if mode is AttachMode.OFFLOAD and code in (errno.EINVAL, errno.EOPNOTSUPP):
        kind = f"a {st.kind} device" if st and st.kind else "this device"
        return XdpError(f"{iface} cannot run XDP in offload mode: that needs a NIC that"
                        " executes BPF itself (e.g. Netronome nfp) and a program loaded for"
                        f" that device (Program.load(..., ifindex=...)); {iface} is {kind}"
                        + (f" (kernel: {said})" if said else ""), code)
    if code in (errno.EOPNOTSUPP, errno.ENOTSUP) or (said and "support" in said.lower()):
        m = mode.value if mode else "the default"
        return XdpError(f"{iface} does not support XDP in {m} mode"
                        + (f" (kernel: {said})" if said else ""), code)
    if said and "MTU" in said:
        mtu = f" (MTU {st.mtu})" if st else ""
        return XdpError(f"MTU of {iface}{mtu} is too large for XDP without frags support:"
                        f" lower the MTU or load the program with xdp.frags (kernel: {said})", code)
    if said:
        return XdpError(f"cannot attach XDP to {iface}: {said}", code)
    return XdpError(f"cannot attach XDP to {iface}: {err}", code)


class XdpAttachment:
    """A program attached by us.  Detaches on :meth:`detach` (or context exit).

    With a link, closing the last reference also detaches (unless the link is pinned);
    with netlink the program stays until :meth:`detach`.
    """

    def __init__(self, iface: str, ifindex: int, mode: AttachMode | None, prog: Any,
                 link: Any = None) -> None:
        self.iface = iface
        self.ifindex = ifindex
        self.mode = mode
        self.prog = prog
        self.link = link

    @property
    def via_link(self) -> bool:
        return self.link is not None

    def replace(self, new_prog: Any) -> None:
        """Atomically swap in ``new_prog``: no packet sees no program."""
        if self.link is not None:
            self.link.update(new_prog, old_prog=self.prog)
        else:
            flags = (self.mode.flag if self.mode else 0) | XDP_FLAGS_REPLACE
            try:
                nl.set_xdp(self.ifindex, new_prog.fd.fileno(), flags,
                           expected_fd=self.prog.fd.fileno())
            except nl.NetlinkError as e:
                raise _explain(e, self.iface, self.mode, None, new_prog) from e
        self.prog = new_prog

    def detach(self) -> None:
        if self.link is not None:
            link, self.link = self.link, None
            try:
                link.detach()
            finally:
                link.close()
            return
        if self.prog is None:
            return
        flags = self.mode.flag if self.mode else 0
        try:
            nl.set_xdp(self.ifindex, -1, flags | XDP_FLAGS_REPLACE,
                       expected_fd=self.prog.fd.fileno())
        except nl.NetlinkError as e:
            if e.errno not in (errno.EEXIST, errno.ENODEV, errno.EBUSY):
                raise XdpError(f"cannot detach XDP from {self.iface}: {e}", e.errno) from e
        self.prog = None

    def __enter__(self) -> XdpAttachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


def attach(iface: str | int, prog: Any, mode: str | AttachMode | None = None, *,
           use_link: bool = True, replace: bool = False) -> XdpAttachment:
    """Attach ``prog`` (a loaded XDP :class:`~pyxdp.kernel.Program`) to ``iface``.

    ``mode`` None lets the kernel choose (native where the driver supports it).  Refuses,
    with an explanation, when a program is attached already (unless ``replace``) and never
    touches a libxdp multi-program dispatcher.
    """
    from pyxdp.kernel import create_xdp_link

    m = AttachMode.parse(mode)
    idx = ifindex_of(iface)
    name = iface if isinstance(iface, str) else str(idx)
    st = status(idx)
    if st.attachments:
        cur = st.attachments[0]
        if cur.is_dispatcher:
            raise XdpError(f"{name} runs the libxdp multi-program dispatcher ({_describe(cur)});"
                           " pyxdp will not clobber it: manage it with xdp-loader", errno.EBUSY)
        if not replace:
            raise XdpError(f"{name} already has {_describe(cur)}; detach it first or pass"
                           " replace=True", errno.EEXIST)
        if m and cur.mode != m:
            raise XdpError(f"{name} has {_describe(cur)}; cannot replace it in {m.value} mode"
                           " (native and generic XDP cannot be active at the same time)",
                           errno.EBUSY)
    flags = m.flag if m else 0
    if use_link and not st.attachments:
        try:
            link = create_xdp_link(prog, idx, flags)
            return XdpAttachment(name, idx, m, prog, link)
        except BpfError as e:
            if e.errno == errno.EPERM:
                raise _explain(e, name, m, st, prog) from e
            # EINVAL/EOPNOTSUPP/EBUSY: fall back to netlink, which also says why
    nl_flags = flags
    expected = None
    if st.attachments and replace:
        cur = st.attachments[0]
        if cur.link_id:
            raise XdpError(f"{name} has {_describe(cur)}: replace it through that link"
                           " (XdpAttachment.replace) or detach the link", errno.EBUSY)
        from pyxdp.kernel import Program

        old = Program.from_id(cur.prog_id)
        nl_flags |= XDP_FLAGS_REPLACE
        expected = old
    else:
        nl_flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
    try:
        nl.set_xdp(idx, prog.fd.fileno(), nl_flags,
                   expected_fd=expected.fd.fileno() if expected else None)
    except nl.NetlinkError as e:
        raise _explain(e, name, m, st, prog) from e
    finally:
        if expected is not None:
            expected.close()
    if m is None:
        got = status(idx).attachments
        m = got[0].mode if got else None
    return XdpAttachment(name, idx, m, prog)


def detach(iface: str | int, mode: str | AttachMode | None = None) -> list[Attachment]:
    """Detach whatever XDP program is attached to ``iface`` (in ``mode`` or any mode).

    Programs held by a bpf_link are detached through the link; a dispatcher is refused.
    Returns what was detached.
    """
    from pyxdp.kernel import Link

    m = AttachMode.parse(mode)
    idx = ifindex_of(iface)
    name = iface if isinstance(iface, str) else str(idx)
    done = []
    for a in status(idx).attachments:
        if m and a.mode != m:
            continue
        if a.is_dispatcher:
            raise XdpError(f"{name} runs the libxdp dispatcher ({_describe(a)}); use"
                           " xdp-loader to unload it", errno.EBUSY)
        if a.link_id == AMBIGUOUS_LINK:
            raise XdpError(f"{name}: {_describe(a)}; detach it through the Link object that"
                           " holds it (or its pin)", errno.EBUSY)
        if a.link_id:
            with Link.from_id(a.link_id) as link:
                link.detach()
        else:
            try:
                nl.set_xdp(idx, -1, a.mode.flag)
            except nl.NetlinkError as e:
                raise XdpError(f"cannot detach {_describe(a)} from {name}: {e}", e.errno) from e
        done.append(a)
    return done


from pyxdp.xdp._libxdp import (  # noqa: E402
    LIBXDP_ROOT,
    DispatcherState,
    dispatcher_state,
)
from pyxdp.xdp._pinned import (  # noqa: E402  (needs the names above)
    PIN_ROOT,
    PinnedAttachment,
    app_owner,
    attach_pinned,
    detach_pinned,
    pin_dir,
)

__all__ = ["AMBIGUOUS_LINK", "LIBXDP_ROOT", "PIN_ROOT", "DispatcherState", "dispatcher_state",
           "AttachMode", "Attachment", "PinnedAttachment", "XdpAttachment", "XdpError",
           "XdpFeature", "XdpStatus", "app_owner", "attach", "attach_pinned", "detach",
           "detach_pinned", "features", "ifindex_of", "in_netns", "pin_dir", "redirect_warnings",
           "status"]
