"""``xdp.attach_pinned`` / ``detach_pinned``: an attachment that outlives its process, pinned
by ``Collection.pin``'s rule, and all-or-nothing when something fails."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyxdp import xdp
from pyxdp.elf import load_object
from pyxdp.errors import PyxdpError
from pyxdp.kernel import Link, Map, Program
from pyxdp.testbed import Testbed

pytestmark = [pytest.mark.netns, pytest.mark.kernel]

OBJ = Path(__file__).resolve().parents[1] / "data" / "obj"


@pytest.fixture
def root() -> Iterator[str]:
    path = f"/sys/fs/bpf/pyxdp-xpin-{secrets.token_hex(4)}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_attach_pinned_pins_by_the_rule_and_detach_removes_it(xdp_bed: Testbed,
                                                              root: str) -> None:
    spec = load_object(OBJ / "btf_map.o")        # one XDP program and three maps
    att = xdp_bed.call("sink", xdp.attach_pinned, "veth1", spec, None, "generic", root=root)
    where = xdp_bed.call("sink", xdp.pin_dir, "veth1", root)
    assert att.pin_dir == where and where.startswith(f"{root}/veth1@netns")
    assert att.program == "count_packets" and att.mode is xdp.AttachMode.GENERIC
    assert att.link_id > 0 and att.as_dict()["via"] == "bpf_link"
    assert sorted(os.listdir(where)) == ["count_packets", "count_packets_link", "counters",
                                         "flows", "pinned_stats"]
    # the caller holds nothing now, yet the program is attached, through the pinned link
    st = xdp_bed.call("sink", xdp.status, "veth1")
    assert [(a.prog_id, a.link_id) for a in st.attachments] == [(att.prog_id, att.link_id)]
    with Link.from_pin(f"{where}/count_packets_link") as link:
        assert link.id == att.link_id
    with Program.from_pin(f"{where}/count_packets") as p:
        assert p.id == att.prog_id
    # a second attach is refused before anything is loaded or touched
    with pytest.raises(xdp.XdpError, match="already has a pyxdp attachment"):
        xdp_bed.call("sink", xdp.attach_pinned, "veth1", spec, root=root)
    done = xdp_bed.call("sink", xdp.detach_pinned, "veth1", None, root)
    assert [a.prog_id for a in done] == [att.prog_id]
    assert xdp_bed.call("sink", xdp.status, "veth1").attachments == ()
    assert not os.path.exists(root)              # nothing else was in it


def test_netlink_attach_pins_nothing(xdp_bed: Testbed, root: str) -> None:
    spec = load_object(OBJ / "btf_map.o")
    att = xdp_bed.call("sink", xdp.attach_pinned, "veth1", spec, "count_packets", "generic",
                       use_link=False, root=root)
    assert att.link_id == 0 and att.pin_dir is None and not os.path.exists(root)
    st = xdp_bed.call("sink", xdp.status, "veth1")
    assert [(a.prog_id, a.link_id) for a in st.attachments] == [(att.prog_id, 0)]
    xdp_bed.call("sink", xdp.detach_pinned, "veth1", None, root)
    assert xdp_bed.call("sink", xdp.status, "veth1").attachments == ()


def test_failed_pin_detaches_and_leaves_nothing(xdp_bed: Testbed, root: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_object(OBJ / "btf_map.o")

    def refuse(self: Link, path: str) -> None:
        raise PyxdpError("pinning refused (test)")

    monkeypatch.setattr(Link, "pin", refuse)     # the very last step fails
    with pytest.raises(PyxdpError, match="pinning refused"):
        xdp_bed.call("sink", xdp.attach_pinned, "veth1", spec, root=root)
    assert xdp_bed.call("sink", xdp.status, "veth1").attachments == ()
    assert not os.path.exists(root)


def test_choosing_the_program(xdp_bed: Testbed, root: str) -> None:
    multi = load_object(OBJ / "multi.o")
    with pytest.raises(PyxdpError, match="has 3 XDP programs.*choose one by name"):
        xdp_bed.call("sink", xdp.attach_pinned, "veth1", multi, root=root)
    with pytest.raises(PyxdpError, match="no program or section 'nope'"):
        xdp_bed.call("sink", xdp.attach_pinned, "veth1", multi, "nope", root=root)
    with pytest.raises(xdp.XdpError, match="no such interface 'nosuch0'"):
        xdp_bed.call("sink", xdp.attach_pinned, "nosuch0", multi, "third_tx", root=root)
    assert not os.path.exists(root)
    att = xdp_bed.call("sink", xdp.attach_pinned, "veth1", multi, "third_tx", "generic",
                       root=root)
    assert att.program == "third_tx"
    # every program of the object is pinned, the attached one with its link
    assert sorted(os.listdir(att.pin_dir)) == ["first_pass", "second_drop", "third_tx",
                                               "third_tx_link"]
    xdp_bed.call("sink", xdp.detach_pinned, "veth1", None, root)


def test_redirect_warnings_name_a_veth_target(xdp_bed: Testbed) -> None:
    from pyxdp.abi import MapType, ProgType
    from pyxdp.asm import Builder
    from pyxdp.maps import MapSpec
    from pyxdp.spec import ProgramSpec

    b = Builder().ld_map_fd(1, "tx").mov64(2, 0).mov64(3, 0).call("redirect_map").exit()
    spec = ProgramSpec("redir", ProgType.XDP, b.build(), map_refs=b.spec_map_refs())
    target = xdp_bed.interfaces[("sink", "veth1")].ifindex
    with Map.create(MapSpec("tx", MapType.DEVMAP, 4, 4, 4)) as dm:
        # a devmap takes interfaces of the namespace the update is made in
        xdp_bed.call("sink", dm.update, 0, target)
        xdp_bed.call("sink", dm.update, 1, 1)          # lo: no XDP program on it
        with Program.load(spec, maps={"tx": dm}) as p:
            att = xdp_bed.call("sink", xdp.attach, "veth1", p, "generic")
            try:
                (a,) = xdp_bed.call("sink", xdp.status, "veth1").attachments
                warnings = xdp_bed.call("sink", xdp.redirect_warnings, a)
            finally:
                xdp_bed.call("sink", att.detach)
    assert len(warnings) == 2, warnings
    assert "redirect target lo has no XDP program" in warnings[0]
    assert "redirect target veth1 is a veth" in warnings[1]


def test_in_netns() -> None:
    assert xdp.in_netns(None, lambda a, b: a + b, 1, 2) == 3
    with pytest.raises(xdp.XdpError, match="no network namespace 'pyxdp-no-such-ns'"):
        xdp.in_netns("pyxdp-no-such-ns", print)
