"""XDP links on a private veth pair: create, atomic update, detach, pin."""

from __future__ import annotations

import errno
import json
import os
import subprocess

import pytest
from kinsns import bpftool, ret

from pyxdp.abi import LinkType
from pyxdp.errors import BpfError
from pyxdp.kernel import XDP_FLAGS_SKB_MODE, Link, Program, create_xdp_link, list_links

pytestmark = [pytest.mark.kernel, pytest.mark.netns]


def xdp_prog_id(dev: str) -> int | None:
    """The XDP program id ``ip link`` reports on ``dev`` (independent of our code)."""
    out = json.loads(subprocess.run(["ip", "-d", "-j", "link", "show", "dev", dev],
                                    check=True, capture_output=True, text=True).stdout)
    xdp = out[0].get("xdp")
    return None if xdp is None else xdp.get("prog", {}).get("id")


def test_create_update_detach(veth: tuple[str, int]) -> None:
    dev, ifindex = veth
    with Program.load(ret(2), name="pass") as p1, Program.load(ret(1), name="drop") as p2, \
            create_xdp_link(p1, ifindex) as link:
        info = link.info()
        assert info.type == LinkType.XDP and info.ifindex == ifindex
        assert info.prog_id == p1.id == xdp_prog_id(dev)
        assert any(li.id == info.id for li in list_links())
        with pytest.raises(BpfError) as exc:       # one XDP link per interface
            create_xdp_link(p2, ifindex)
        assert exc.value.errno == errno.EBUSY and exc.value.command == "BPF_LINK_CREATE"

        link.update(p2)
        assert link.info().prog_id == p2.id == xdp_prog_id(dev)
        with pytest.raises(BpfError) as exc:       # p1 is no longer the attached program
            link.update(p1, old_prog=p1)
        assert exc.value.errno == errno.EPERM and exc.value.command == "BPF_LINK_UPDATE"
        link.update(p1, old_prog=p2)
        assert xdp_prog_id(dev) == p1.id

        link.detach()
        assert xdp_prog_id(dev) is None
    assert xdp_prog_id(dev) is None


def test_closing_the_link_detaches(veth: tuple[str, int]) -> None:
    dev, ifindex = veth
    with Program.load(ret(2)) as p:
        link = create_xdp_link(p, ifindex, XDP_FLAGS_SKB_MODE)
        assert xdp_prog_id(dev) == p.id
        link.close()
        assert xdp_prog_id(dev) is None


def test_pinned_link_outlives_its_fd(veth: tuple[str, int], pin_dir: str) -> None:
    dev, ifindex = veth
    path = os.path.join(pin_dir, "link")
    with Program.load(ret(2)) as p:
        with create_xdp_link(p, ifindex) as link:
            link.pin(path)
            link_id = link.id
        assert xdp_prog_id(dev) == p.id             # the pin holds it
        assert bpftool("link", "show", "pinned", path)["id"] == link_id
        with Link.from_pin(path) as again, Link.from_id(link_id) as by_id:
            assert again.info().prog_id == by_id.info().prog_id == p.id
            again.unpin(path)
        assert xdp_prog_id(dev) is None


def test_bad_ifindex() -> None:
    with Program.load(ret(2)) as p, pytest.raises(BpfError) as exc:
        create_xdp_link(p, 0x7FFFFFF0)
    assert exc.value.errno in (errno.EINVAL, errno.ENODEV)
