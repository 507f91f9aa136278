"""``pyxdp top``: every XDP program of this network namespace, live.

Per interface: mode, program, id, packets/s and ns/packet from the kernel's run
statistics (``BPF_ENABLE_STATS`` is held while top runs, so nothing global changes), and
for an interface running a ``pyxdp chain`` its stages in order.  The kernel counts runs
of the attached (entry) program only: stages reached by tail call have no statistics of
their own, so their share of the time is inside the root's figure.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProgSample:
    iface: str
    ifindex: int
    mode: str
    prog_id: int
    name: str
    link_id: int
    run_cnt: int
    run_time_ns: int
    dispatcher: bool = False
    stages: list[dict[str, Any]] = field(default_factory=list)


def _chain_stages(iface: str, state_root: str, pin_root: str) -> list[dict[str, Any]]:
    """The stages of a pyxdp chain on ``iface`` with their program ids (from the pinned
    prog array of the generation in force), or [] when there is no chain."""
    from pyxdp.apps.chain import Chain
    from pyxdp.errors import PyxdpError
    from pyxdp.kernel import Map, Program

    try:
        ch = Chain.open(iface, pin_root=pin_root, state_root=state_root)
    except PyxdpError:
        return []
    out = []
    ordered = sorted(ch.stages, key=lambda s: s.priority)
    try:
        pa = Map.from_pin(os.path.join(ch.pin_dir, f"progs_g{ch.generation}"))
    except OSError:
        return [{"slot": i, "name": s.name, "prog_id": None} for i, s in enumerate(ordered)]
    with pa:
        for i, s in enumerate(ordered):
            prog_id = None
            try:     # a prog array's lookup from user space gives the program's id
                got = pa.get(i)
                prog_id = int(got) if got is not None else None
            except (OSError, PyxdpError, ValueError, TypeError):
                pass
            name = s.name
            if prog_id:
                try:
                    with Program.from_id(prog_id) as p:
                        name = f"{s.name} ({p.info().name})"
                except OSError:
                    pass
            out.append({"slot": i, "name": name, "prog_id": prog_id,
                        "priority": s.priority})
    return out


def snapshot(state_root: str | None = None, pin_root: str | None = None) -> list[ProgSample]:
    """One reading of every XDP attachment in the calling thread's namespace."""
    from pyxdp import xdp
    from pyxdp.apps.chain import PIN_ROOT, STATE_ROOT
    from pyxdp.kernel import Program

    out = []
    for ifindex, name in socket.if_nameindex():
        try:
            st = xdp.status(name)
        except OSError:
            continue
        for a in st.attachments:
            cnt = rt = 0
            pname = "?"
            try:
                with Program.from_id(a.prog_id) as p:
                    info = p.info()
                    cnt, rt, pname = info.run_cnt, info.run_time_ns, info.name
            except OSError:
                pass
            out.append(ProgSample(
                name, ifindex, a.mode.value if a.mode else "?", a.prog_id, pname,
                max(a.link_id, 0), cnt, rt, a.is_dispatcher,
                _chain_stages(name, state_root or STATE_ROOT, pin_root or PIN_ROOT)))
    return out


def rates(before: list[ProgSample], after: list[ProgSample], seconds: float
          ) -> list[dict[str, Any]]:
    """Rows for display: the later snapshot with packets/s and ns/packet since the
    earlier one (None where the program changed or did not run)."""
    old = {(s.ifindex, s.prog_id): s for s in before}
    rows = []
    for s in after:
        prev = old.get((s.ifindex, s.prog_id))
        pps = nspp = None
        if prev is not None and seconds > 0:
            dc, dt = s.run_cnt - prev.run_cnt, s.run_time_ns - prev.run_time_ns
            pps = dc / seconds
            nspp = dt / dc if dc > 0 else None
        rows.append({"iface": s.iface, "ifindex": s.ifindex, "mode": s.mode,
                     "program": s.name + (" [libxdp dispatcher]" if s.dispatcher else ""),
                     "prog_id": s.prog_id, "link_id": s.link_id, "run_cnt": s.run_cnt,
                     "pps": pps, "ns_per_packet": nspp, "stages": s.stages})
    return rows


def measure(interval: float = 1.0, **roots: Any) -> list[dict[str, Any]]:
    """Rates over one ``interval`` (statistics enabled for it)."""
    from pyxdp.kernel import enable_stats

    with enable_stats():
        a = snapshot(**roots)
        t0 = time.monotonic()
        time.sleep(interval)
        b = snapshot(**roots)
        return rates(a, b, time.monotonic() - t0)


def render(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="XDP programs", expand=False)
    for col in ("interface", "mode", "program", "id", "link", "packets/s", "ns/packet"):
        t.add_column(col, justify="right" if col in ("id", "link", "packets/s", "ns/packet")
                     else "left")
    for r in rows:
        pps = "-" if r["pps"] is None else f"{r['pps']:,.0f}"
        ns = "-" if r["ns_per_packet"] is None else f"{r['ns_per_packet']:.1f}"
        t.add_row(r["iface"], r["mode"], r["program"], str(r["prog_id"]),
                  str(r["link_id"] or "-"), pps, ns)
        for st in r["stages"]:
            t.add_row("", "", f"  └ stage {st['slot']}: {st['name']}",
                      str(st["prog_id"] or "-"), "", "(in root)", "")
    if not rows:
        t.add_row("(no XDP programs in this namespace)", "", "", "", "", "", "")
    return t


def as_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2)


__all__ = ["ProgSample", "as_json", "measure", "rates", "render", "snapshot"]
