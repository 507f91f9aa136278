"""BPF links: attachments owned by a file descriptor.

A link detaches when its last fd (or pin) goes away, so a crashed control plane cannot
leave a program attached by accident, and ``update`` swaps the program atomically
(no window without a program on the interface).
"""

from __future__ import annotations

from typing import Any

from pyxdp.abi import (
    BPF_F_REPLACE,
    XDP_FLAGS_DRV_MODE,
    XDP_FLAGS_HW_MODE,
    XDP_FLAGS_SKB_MODE,
    XDP_FLAGS_UPDATE_IF_NOEXIST,
    AttachType,
    Cmd,
)
from pyxdp.kernel._fd import Fd, fd_number
from pyxdp.kernel._info import LinkInfo, fd_by_id, link_info
from pyxdp.kernel._owned import OwnedObject
from pyxdp.kernel._pin import obj_get
from pyxdp.kernel._sys import LinkCreateAttr, LinkDetachAttr, LinkUpdateAttr, bpf


class Link(OwnedObject):
    """A live link. Closing the last reference (fd and pins) detaches it."""

    def __init__(self, fd: Fd) -> None:
        self.fd = fd
        self._pinned: str | None = None

    @classmethod
    def create(cls, prog: Any, target: int, attach_type: AttachType | int,
               flags: int = 0) -> Link:
        """BPF_LINK_CREATE: attach ``prog`` to ``target`` (an ifindex or an fd)."""
        attr = LinkCreateAttr(prog_fd=fd_number(prog), target_fd=target,
                              attach_type=int(attach_type), flags=flags)
        return cls(Fd(bpf(Cmd.LINK_CREATE, attr)))

    @classmethod
    def from_pin(cls, path: str) -> Link:
        return cls(obj_get(path))

    @classmethod
    def from_id(cls, link_id: int) -> Link:
        return cls(fd_by_id(Cmd.LINK_GET_FD_BY_ID, link_id))

    def update(self, new_prog: Any, old_prog: Any = None) -> None:
        """Atomically replace the link's program (BPF_LINK_UPDATE).

        With ``old_prog`` the swap only happens if that is still the attached program
        (``BPF_F_REPLACE``; otherwise ``EPERM``), so two controllers cannot race.
        """
        attr = LinkUpdateAttr(link_fd=self.fd.fileno(), new_prog_fd=fd_number(new_prog))
        if old_prog is not None:
            attr.flags = BPF_F_REPLACE
            attr.old_prog_fd = fd_number(old_prog)
        bpf(Cmd.LINK_UPDATE, attr)

    def detach(self) -> None:
        """Detach now (BPF_LINK_DETACH), even if pins or other fds still hold the link;
        the link object stays valid but defunct."""
        bpf(Cmd.LINK_DETACH, LinkDetachAttr(link_fd=self.fd.fileno()))

    def info(self) -> LinkInfo:
        return link_info(self.fd)

    @property
    def id(self) -> int:
        return self.info().id

    def __repr__(self) -> str:
        return "<Link closed>" if self.fd.closed else f"<Link fd={self.fd.fileno()}>"


def create_xdp_link(prog: Any, ifindex: int, flags: int = 0) -> Link:
    """Attach an XDP program to interface ``ifindex`` through a link (Linux 5.9+).

    ``flags`` selects the mode (``XDP_FLAGS_SKB_MODE``/``DRV_MODE``/``HW_MODE``); 0 lets
    the kernel pick native mode when the driver has it, else generic.
    """
    return Link.create(prog, ifindex, AttachType.XDP, flags)


__all__ = [
    "BPF_F_REPLACE", "XDP_FLAGS_DRV_MODE", "XDP_FLAGS_HW_MODE", "XDP_FLAGS_SKB_MODE",
    "XDP_FLAGS_UPDATE_IF_NOEXIST", "Link", "create_xdp_link",
]
