"""Attachments that outlive the process that made them: load an object, attach one of its
programs to an interface, and pin it all by :meth:`~pyxdp.kernel.Collection.pin`'s rule.

This is what ``pyxdp attach`` / ``pyxdp detach`` do; as a library call it is how a one-shot
tool (or a restartable daemon) attaches XDP without keeping a process alive.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyxdp.abi import ProgType

if TYPE_CHECKING:
    from pyxdp.spec import ObjectSpec
    from pyxdp.xdp import Attachment, AttachMode, XdpAttachment

PIN_ROOT = "/sys/fs/bpf/pyxdp"


def pin_dir(iface: str, root: str = PIN_ROOT) -> str:
    """The pin directory of ``iface`` in the calling thread's network namespace:
    ``<root>/<iface>@netns<inode>`` (pins are global, interface names are per namespace)."""
    ns_ino = os.stat("/proc/thread-self/ns/net").st_ino
    return os.path.join(root, f"{iface}@netns{ns_ino}")


@dataclass(frozen=True)
class PinnedAttachment:
    """What :func:`attach_pinned` attached: ``link_id`` 0 means netlink (no bpf_link), and
    ``pin_dir`` None that nothing was pinned (a netlink attachment holds the program)."""

    iface: str
    program: str
    prog_id: int
    mode: AttachMode | None   # None: the kernel chose and did not say
    link_id: int
    pin_dir: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"iface": self.iface, "program": self.program, "prog_id": self.prog_id,
                "mode": self.mode.value if self.mode else None, "link_id": self.link_id,
                "via": "bpf_link" if self.link_id else "netlink", "pin_dir": self.pin_dir}


def attach_pinned(iface: str, obj: ObjectSpec, program: str | None = None,
                  mode: str | AttachMode | None = None, *,
                  replace: bool = False, use_link: bool = True,
                  root: str = PIN_ROOT) -> PinnedAttachment:
    """Load ``obj`` (an :class:`~pyxdp.spec.ObjectSpec`), attach ``program`` (program or
    section name; default: the object's only XDP program) to ``iface`` and keep it there
    after the caller exits.

    With a bpf_link (the default) every program and map is pinned under
    :func:`pin_dir` ``(iface, root)`` by the rule of :meth:`Collection.pin
    <pyxdp.kernel.Collection.pin>`, and the link at ``<dir>/<program>_link``.  With
    ``use_link=False`` the program is attached by netlink, as ``ip link`` does, and the
    interface holds it without pins.  All or nothing: if attaching or pinning fails, the
    program is detached again and the pins and directories made are removed.
    """
    from pyxdp.kernel import ensure_bpffs, load_collection, pin_name, unpin
    from pyxdp.kernel._pin import private_bpffs_reason
    from pyxdp.xdp import XdpError, attach, ifindex_of

    spec = obj.program(program, None if program else ProgType.XDP)
    ifindex_of(iface)                 # a clear error before anything is loaded
    with load_collection(obj) as coll:
        prog = coll.programs[spec.name]
        if not use_link:
            att = attach(iface, prog, mode, use_link=False, replace=replace)
            return PinnedAttachment(iface, spec.name, prog.id, _mode_of(att, prog.id), 0,
                                    None)
        ensure_bpffs()
        where = pin_dir(iface, root)
        why = private_bpffs_reason(where)
        if why is not None:
            raise XdpError(f"refusing to attach {spec.name!r} to {iface}: {why}; run"
                           " `pyxdp attach --netns NS ...` from the host namespace instead"
                           " (or --no-link, which the interface holds without pins)",
                           errno.EPERM)
        if os.path.lexists(where):
            raise XdpError(f"{where} exists: {iface} already has a pyxdp attachment;"
                           " detach it first", errno.EEXIST)
        att = attach(iface, prog, mode, replace=replace)
        link_pin = os.path.join(where, pin_name(spec.name) + "_link")
        link_id = 0
        try:
            coll.pin(where)
            if att.link is not None:
                link_id = att.link.id
                att.link.pin(link_pin)
        except BaseException:
            att.detach()
            unpin(link_pin, missing_ok=True)
            coll.unpin()
            raise
        if att.link is not None:
            att.link.close()          # the pin holds the attachment now
        return PinnedAttachment(iface, spec.name, prog.id, _mode_of(att, prog.id), link_id,
                                where)


def _mode_of(att: XdpAttachment, prog_id: int) -> AttachMode | None:
    """The mode the kernel picked when the caller left it open."""
    from pyxdp.xdp import status

    if att.mode is not None:
        return att.mode
    for a in status(att.ifindex).attachments:
        if a.prog_id == prog_id:
            return a.mode
    return None


def app_owner(iface: str, root: str = PIN_ROOT) -> tuple[str, str] | None:
    """The pyxdp app whose pinned link holds ``iface``'s XDP program, as ``(app, pin
    directory)``, or None.

    Apps pin under a root of their own next to ``root`` (``/sys/fs/bpf/pyxdp-<app>``) in
    the same ``<iface>@netns<inode>`` layout as :func:`pin_dir`; an app owns the interface
    when a link pinned there is the one attached now.
    """
    from pyxdp.kernel import Link
    from pyxdp.xdp import status

    attached = {a.link_id for a in status(iface).attachments if a.link_id > 0}
    if not attached:
        return None
    instance = os.path.basename(pin_dir(iface, root))
    parent = os.path.dirname(os.path.abspath(root))
    try:
        roots = sorted(os.listdir(parent))
    except OSError:
        return None
    own = os.path.basename(os.path.abspath(root))
    for name in roots:
        if not name.startswith("pyxdp-") or name == own:
            continue
        where = os.path.join(parent, name, instance)
        try:
            pins = [p for p in os.listdir(where) if p.endswith("_link") or p == "link"]
        except OSError:
            continue
        for p in pins:
            try:
                with Link.from_pin(os.path.join(where, p)) as link:
                    if link.info().id in attached:
                        return name[len("pyxdp-"):], where
            except OSError:
                continue
    return None


def detach_pinned(iface: str, mode: str | AttachMode | None = None,
                  root: str = PIN_ROOT, *, force: bool = False) -> list[Attachment]:
    """Detach the XDP program of ``iface`` (:func:`pyxdp.xdp.detach`) and remove the pins
    :func:`attach_pinned` made for it, and ``root`` when nothing else is left in it.
    Returns the :class:`~pyxdp.xdp.Attachment` s detached.

    An interface held by a pyxdp app (:func:`app_owner`: the filter, ...) is refused unless
    ``force``: the app's state would say it is attached while nothing is.
    """
    import contextlib

    from pyxdp.kernel import unpin
    from pyxdp.xdp import XdpError, detach

    owner = None if force else app_owner(iface, root)
    if owner is not None:
        app, where = owner
        raise XdpError(f"{iface} is attached by `pyxdp {app}` (link pinned in {where}):"
                       f" detach it with `pyxdp {app} detach {iface}`, or force it with"
                       " `pyxdp detach --force`", errno.EBUSY)
    done = detach(iface, mode)
    where = pin_dir(iface, root)
    if os.path.isdir(where):
        for name in os.listdir(where):
            unpin(os.path.join(where, name), missing_ok=True)
        os.rmdir(where)
        with contextlib.suppress(OSError):
            os.rmdir(root)            # only when empty: other interfaces keep theirs
    return done


__all__ = ["PIN_ROOT", "PinnedAttachment", "app_owner", "attach_pinned", "detach_pinned",
           "pin_dir"]
