"""The few rtnetlink messages XDP needs, written out by hand.

Why not pyroute2 here: attaching XDP needs ``IFLA_XDP_EXPECTED_FD`` (atomic replace) and the
kernel's extended-ack message (the only place the kernel *says why*, e.g. "MTU too large
for XDP"), and callers need ``OSError`` with errno.  That is ~150 lines of ``struct``; the
socket is created per call, so it belongs to the network namespace of the calling thread.
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import struct
from dataclasses import dataclass

from pyxdp.abi import (
    IFLA_EXT_MASK,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MTU,
    IFLA_XDP,
    IFLA_XDP_ATTACHED,
    IFLA_XDP_DRV_PROG_ID,
    IFLA_XDP_EXPECTED_FD,
    IFLA_XDP_FD,
    IFLA_XDP_FLAGS,
    IFLA_XDP_HW_PROG_ID,
    IFLA_XDP_PROG_ID,
    IFLA_XDP_SKB_PROG_ID,
    NETLINK_EXT_ACK,
    NETLINK_ROUTE,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGERR_ATTR_MSG,
    RTEXT_FILTER_SKIP_STATS,
    RTM_GETLINK,
    RTM_SETLINK,
    SOL_NETLINK,
)

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_NLATTR = struct.Struct("=HH")


class NetlinkError(OSError):
    """The kernel refused a netlink request; ``extack`` is the kernel's own explanation."""

    errno: int              # always set (OSError's own is Optional)

    def __init__(self, err: int, what: str, extack: str = "") -> None:
        self.extack = extack
        msg = f"{what}: {os.strerror(err)}"
        if extack:
            msg += f" (kernel says: {extack})"
        super().__init__(err, msg)

    def __str__(self) -> str:
        return str(self.strerror)


def _attr(kind: int, payload: bytes) -> bytes:
    length = _NLATTR.size + len(payload)
    return _NLATTR.pack(length, kind) + payload + bytes((4 - length % 4) % 4)


def _parse_attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        length, kind = _NLATTR.unpack_from(data, pos)
        if length < 4 or pos + length > len(data):
            break
        out[kind & 0x3FFF] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return out


def _request(msg_type: int, flags: int, ifindex: int, attrs: bytes, what: str) -> list[bytes]:
    """Send one request; return the payloads of the replies (after ifinfomsg header parse)."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + attrs
    return _transact(NETLINK_ROUTE, msg_type, flags, body, what)


def _transact(proto: int, msg_type: int, flags: int, body: bytes, what: str) -> list[bytes]:
    """One netlink request on a fresh socket of ``proto``; the payloads of the replies."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto) as s:
        s.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        s.bind((0, 0))
        seq = 1
        s.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type,
                              NLM_F_REQUEST | NLM_F_ACK | flags, seq, 0) + body)
        replies: list[bytes] = []
        while True:
            data = s.recv(65536)
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, mtype, mflags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
                if length < _NLMSGHDR.size:
                    raise NetlinkError(_errno.EPROTO, what, "malformed netlink reply")
                payload = data[pos + _NLMSGHDR.size:pos + length]
                pos += (length + 3) & ~3
                if mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", payload)
                    if err == 0:
                        return replies
                    extack = ""
                    if mflags & NLM_F_ACK_TLVS:
                        # the error message echoes the request header; TLVs follow it
                        tlvs = _parse_attrs(payload[4 + _NLMSGHDR.size:]) if mflags & 0x100 else \
                            _parse_attrs(payload[4 + _NLMSGHDR.size + len(body):])
                        raw = tlvs.get(NLMSGERR_ATTR_MSG, b"")
                        extack = raw.rstrip(b"\0").decode(errors="replace")
                    raise NetlinkError(-err, what, extack)
                if mtype == NLMSG_DONE:
                    return replies
                replies.append(payload)


@dataclass(frozen=True)
class XdpQuery:
    """What netlink reports about XDP on one interface."""

    ifindex: int
    ifname: str
    mtu: int
    kind: str                # "veth", "" for a physical device, ...
    attached: int            # XDP_ATTACHED_* (0 none, 1 drv, 2 skb, 3 hw, 4 multi)
    prog_id: int             # the single program's id (0 with none or multi)
    drv_prog_id: int
    skb_prog_id: int
    hw_prog_id: int


def query(ifindex: int) -> XdpQuery:
    attrs = _attr(IFLA_EXT_MASK, struct.pack("=I", RTEXT_FILTER_SKIP_STATS))
    replies = _request(RTM_GETLINK, 0, ifindex, attrs, f"query XDP on ifindex {ifindex}")
    for payload in replies:
        la = _parse_attrs(payload[_IFINFOMSG.size:])
        xdp = _parse_attrs(la.get(IFLA_XDP, b""))
        info = _parse_attrs(la.get(IFLA_LINKINFO, b""))

        def u32(d: dict[int, bytes], k: int) -> int:
            return struct.unpack("=I", d[k][:4])[0] if k in d else 0

        attached = xdp[IFLA_XDP_ATTACHED][0] if IFLA_XDP_ATTACHED in xdp else 0
        prog_id = u32(xdp, IFLA_XDP_PROG_ID)
        drv, skb, hw = (u32(xdp, IFLA_XDP_DRV_PROG_ID), u32(xdp, IFLA_XDP_SKB_PROG_ID),
                        u32(xdp, IFLA_XDP_HW_PROG_ID))
        if attached == 1 and not drv:
            drv = prog_id
        elif attached == 2 and not skb:
            skb = prog_id
        elif attached == 3 and not hw:
            hw = prog_id
        return XdpQuery(
            ifindex=ifindex,
            ifname=la.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
            mtu=u32(la, IFLA_MTU),
            kind=info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode(),
            attached=attached, prog_id=prog_id, drv_prog_id=drv, skb_prog_id=skb,
            hw_prog_id=hw)
    raise NetlinkError(_errno.ENODEV, f"query XDP on ifindex {ifindex}", "no reply")


# generic netlink: the "netdev" family (Linux 6.3+) reports a device's XDP features
NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
NETDEV_CMD_DEV_GET = 1
NETDEV_A_DEV_IFINDEX = 1
NETDEV_A_DEV_XDP_FEATURES = 3
_GENLMSGHDR = struct.Struct("=BBH")


def _genl(family: int, cmd: int, attrs: bytes, what: str) -> list[dict[int, bytes]]:
    body = _GENLMSGHDR.pack(cmd, 1, 0) + attrs
    return [_parse_attrs(r[_GENLMSGHDR.size:])
            for r in _transact(NETLINK_GENERIC, family, 0, body, what)]


def xdp_features(ifindex: int) -> int | None:
    """The device's ``NETDEV_XDP_ACT_*`` bits (basic, redirect, ndo_xmit...), or None on
    a kernel without the netdev netlink family (before 6.3)."""
    try:
        fam = _genl(GENL_ID_CTRL, CTRL_CMD_GETFAMILY,
                    _attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0"), "resolve genl family netdev")
    except NetlinkError as e:
        if e.errno == _errno.ENOENT:
            return None
        raise
    fid = next((struct.unpack("=H", a[CTRL_ATTR_FAMILY_ID][:2])[0] for a in fam
                if CTRL_ATTR_FAMILY_ID in a), None)
    if fid is None:
        return None
    for a in _genl(fid, NETDEV_CMD_DEV_GET, _attr(NETDEV_A_DEV_IFINDEX,
                                                   struct.pack("=I", ifindex)),
                   f"query XDP features of ifindex {ifindex}"):
        if NETDEV_A_DEV_XDP_FEATURES in a:
            return int(struct.unpack("=Q", a[NETDEV_A_DEV_XDP_FEATURES][:8])[0])
    return 0


def set_xdp(ifindex: int, fd: int, flags: int, expected_fd: int | None = None) -> None:
    """``IFLA_XDP``: attach ``fd`` (or detach with ``fd=-1``) with ``XDP_FLAGS_*``."""
    inner = _attr(IFLA_XDP_FD, struct.pack("=i", fd)) + _attr(IFLA_XDP_FLAGS,
                                                                 struct.pack("=I", flags))
    if expected_fd is not None:
        inner += _attr(IFLA_XDP_EXPECTED_FD, struct.pack("=i", expected_fd))
    what = (f"detach XDP from ifindex {ifindex}" if fd < 0 else
            f"attach XDP to ifindex {ifindex}")
    _request(RTM_SETLINK, 0, ifindex, _attr(IFLA_XDP | NLA_F_NESTED, inner), what)
