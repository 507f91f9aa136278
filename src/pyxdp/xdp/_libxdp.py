"""Reading libxdp's multi-program dispatcher: what ``xdp-loader`` attached, in what order.

libxdp (protocol version 2) attaches one ``xdp_dispatcher`` program whose ``.rodata``
holds ``struct xdp_dispatcher_config``::

    __u8 magic;                 /* XDP_DISPATCHER_MAGIC, 236 */
    __u8 dispatcher_version;    /* 2 */
    __u8 num_progs_enabled;
    __u8 is_xdp_frags;
    __u32 chain_call_actions[10];   /* bit (1 << verdict): continue to the next program */
    __u32 run_prios[10];
    __u32 program_flags[10];

and attaches the component programs with freplace (``BPF_PROG_TYPE_EXT``) to its
``prog0`` .. ``prog9`` stubs, pinning them under
``/sys/fs/bpf/xdp/dispatch-<ifindex>-<dispatcher prog id>/prog<N>-prog`` (and
``prog<N>-link``).  This module reads both, for ``pyxdp status``; it changes nothing.
Adding or removing components needs freplace, which this kernel's policy may refuse
(``pyxdp features`` probes ``ext``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from pyxdp.abi import XdpAction

LIBXDP_ROOT = "/sys/fs/bpf/xdp"
DISPATCHER_MAGIC = 236
MAX_DISPATCHER_ACTIONS = 10
CONFIG = struct.Struct("<BBBB10I10I10I")


@dataclass(frozen=True)
class Component:
    slot: int
    run_prio: int
    chain_call_actions: list[str]
    prog_id: int | None = None       # from the pin, when readable
    prog_name: str | None = None
    frags: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"slot": self.slot, "run_prio": self.run_prio,
                "chain_call_actions": self.chain_call_actions, "prog_id": self.prog_id,
                "prog_name": self.prog_name, "frags": self.frags}


@dataclass(frozen=True)
class DispatcherState:
    version: int
    num_progs_enabled: int
    is_xdp_frags: bool
    components: list[Component] = field(default_factory=list)
    pin_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "num_progs_enabled": self.num_progs_enabled,
                "is_xdp_frags": self.is_xdp_frags, "pin_dir": self.pin_dir,
                "components": [c.as_dict() for c in self.components]}


def parse_config(raw: bytes) -> tuple[int, int, bool, list[int], list[int], list[int]]:
    """``struct xdp_dispatcher_config`` -> (version, enabled, frags, actions, prios, flags);
    ValueError when it is not one (wrong magic or size)."""
    if len(raw) < CONFIG.size:
        raise ValueError(f"{len(raw)} bytes: an xdp_dispatcher_config has {CONFIG.size}")
    v = CONFIG.unpack_from(raw)
    if v[0] != DISPATCHER_MAGIC:
        raise ValueError(f"magic {v[0]}, libxdp's dispatcher has {DISPATCHER_MAGIC}")
    n = MAX_DISPATCHER_ACTIONS
    return v[1], v[2], bool(v[3]), list(v[4:4 + n]), list(v[4 + n:4 + 2 * n]), \
        list(v[4 + 2 * n:4 + 3 * n])


def action_names(mask: int) -> list[str]:
    return [a.name.lower() for a in XdpAction if mask >> int(a) & 1]


def dispatcher_state(ifindex: int, prog_id: int, root: str = LIBXDP_ROOT
                     ) -> DispatcherState | None:
    """The configuration of the dispatcher program ``prog_id`` attached to ``ifindex``
    and its components, or None when it cannot be read (not a v2 dispatcher, or no
    privileges)."""
    from pyxdp.kernel import Map, Program

    try:
        with Program.from_id(prog_id) as p:
            map_ids = p.info().map_ids
        raw = None
        for mid in map_ids:
            with Map.from_id(mid) as m:
                if m.info().name.endswith(".rodata") and m.spec.value_size >= CONFIG.size:
                    raw = m.lookup_raw(0)
                    break
    except OSError:
        return None
    if raw is None:
        return None
    try:
        version, enabled, frags, actions, prios, flags = parse_config(raw)
    except ValueError:
        return None
    pin_dir = os.path.join(root, f"dispatch-{ifindex}-{prog_id}")
    comps = []
    for slot in range(min(enabled, MAX_DISPATCHER_ACTIONS)):
        pid = name = None
        try:
            with Program.from_pin(os.path.join(pin_dir, f"prog{slot}-prog")) as cp:
                info = cp.info()
                pid, name = info.id, info.name
        except OSError:
            pass
        comps.append(Component(slot, prios[slot], action_names(actions[slot]), pid, name,
                               bool(flags[slot] & 1)))
    return DispatcherState(version, enabled, frags, comps,
                           pin_dir if os.path.isdir(pin_dir) else None)


__all__ = ["LIBXDP_ROOT", "Component", "DispatcherState", "dispatcher_state", "parse_config"]
