"""The filter's control plane: attach, change rules atomically, read counters, detach.

Atomicity: a rule set is never edited in place.  :meth:`Filter.apply` compiles the whole
set (refusing it before anything is loaded), loads a new *generation* — a program instance
with its own freshly filled rule maps — and swaps it in with one ``BPF_LINK_UPDATE``.  A
packet runs either the old program with the old maps or the new one with the new maps,
never a mix; counters, rate buckets and top talkers are maps shared by all generations
through bpffs pins, and counters are keyed by a per-name slot so they carry over.

Restarts: the link and the shared maps are pinned under ``<pin_root>/<iface>@netns<ino>``
and the rule set, slots and sizes are saved in ``<state_root>/<iface>@netns<ino>/``, so a
new process reopens everything with :meth:`Filter.open`.  Interfaces are resolved in the
calling thread's network namespace; pins are global, hence the namespace inode in the
names.  A lock file serialises control planes working on the same filter.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from pyxdp.apps.filter import dataplane as dp
from pyxdp.apps.filter.program import PROGRAM, compiled, load_generation
from pyxdp.apps.filter.rules import Rule, RuleError, RuleSet
from pyxdp.apps.filter.state import FilterState, write_atomic
from pyxdp.apps.filter.tables import Sizes, assign_slots, compile_tables
from pyxdp.errors import PyxdpError

PIN_ROOT = "/sys/fs/bpf/pyxdp-filter"
STATE_ROOT = "/run/pyxdp-filter"
SPECIAL = {"@default": dp.SLOT_DEFAULT, "@passed": dp.SLOT_PASSED, "@dropped": dp.SLOT_DROPPED}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FilterError(PyxdpError):
    """The filter cannot do what was asked (no filter there, one already attached...)."""


class NoSuchRule(RuleError, KeyError):
    """``delete`` of a rule name the filter does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def instance_name(iface: str) -> str:
    """``<iface>@netns<inode>`` of the calling thread's namespace: pins are global, names
    are per namespace."""
    return f"{iface}@netns{os.stat('/proc/thread-self/ns/net').st_ino}"


def _netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


class Filter:
    """A filter attached to one interface.  Build with :meth:`attach` or :meth:`open`."""

    def __init__(self, state: FilterState, pin_dir: str, state_dir: str, link: Any) -> None:
        self._state = state
        self.pin_dir = pin_dir
        self.state_dir = state_dir
        self._link = link
        self._gen: Any = None            # the current generation's Collection, if ours
        self._shared: dict[str, Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def attach(cls, iface: str, mode: str | None = None, rules: RuleSet | None = None,
               pin_root: str = PIN_ROOT, *, state_root: str = STATE_ROOT,
               sizes: Sizes | None = None) -> Filter:
        """Attach a filter with ``rules`` (default: an empty allow-all set) to ``iface``."""
        from pyxdp import xdp
        from pyxdp.kernel import DEFAULT_BPFFS, ensure_bpffs, is_bpffs

        rs = rules if rules is not None else RuleSet()
        sizes = sizes or Sizes()
        ifindex = xdp.ifindex_of(iface)         # a clear error before anything is loaded
        name = instance_name(iface)
        pin_dir, state_dir = os.path.join(pin_root, name), os.path.join(state_root, name)
        if os.path.exists(os.path.join(state_dir, "state.json")):
            raise FilterError(f"{iface} already has a pyxdp filter ({state_dir}): use"
                              " Filter.open, or detach it first")
        slots = assign_slots(rs.rules, {}, sizes.rules)
        tables = compile_tables(rs, slots, sizes)
        if pin_root.startswith(DEFAULT_BPFFS + "/"):
            ensure_bpffs()
        elif not is_bpffs(os.path.dirname(pin_root.rstrip("/")) or "/"):
            raise FilterError(f"pin_root {pin_root} is not on a bpf filesystem")
        os.makedirs(pin_dir, exist_ok=True)
        os.makedirs(state_dir, exist_ok=True)
        state = FilterState(iface, ifindex, _netns(), mode, sizes, rs, slots, 1)
        gen = att = None
        try:
            _clear_pins(pin_dir)                # leftovers of a crashed attach
            gen = load_generation(tables, sizes, pin_dir)
            att = xdp.attach(iface, gen.programs[PROGRAM], mode)
            if att.link is None:
                raise FilterError(f"{iface}: attached without a bpf_link; the filter needs"
                                  " one for atomic rule changes")
            att.link.pin(os.path.join(pin_dir, "link"))
            write_atomic(os.path.join(state_dir, "state.json"), state.to_json())
        except BaseException:
            if att is not None:
                att.detach()
            if gen is not None:
                gen.close()
            shutil.rmtree(pin_dir, ignore_errors=True)
            shutil.rmtree(state_dir, ignore_errors=True)
            raise
        f = cls(state, pin_dir, state_dir, att.link)
        f._gen = gen
        return f

    @classmethod
    def open(cls, iface: str, pin_root: str = PIN_ROOT, *,
             state_root: str = STATE_ROOT) -> Filter:
        """Reopen the filter attached to ``iface`` (by this or an earlier process)."""
        from pyxdp.kernel import Link

        name = instance_name(iface)
        pin_dir, state_dir = os.path.join(pin_root, name), os.path.join(state_root, name)
        path = os.path.join(state_dir, "state.json")
        try:
            with open(path) as fh:
                text = fh.read()
        except FileNotFoundError:
            raise FilterError(f"{iface} has no pyxdp filter (no {path})") from None
        state = FilterState.from_json(text, path)
        try:
            link = Link.from_pin(os.path.join(pin_dir, "link"))
        except OSError as e:
            raise FilterError(f"{iface}: filter state exists but its link pin is gone"
                              f" ({e}); detach and attach again") from None
        return cls(state, pin_dir, state_dir, link)

    def close(self) -> None:
        """Release this process's handles; the filter keeps running (pinned)."""
        if self._gen is not None:
            self._gen.close()
            self._gen = None
        for m in (self._shared or {}).values():
            m.close()
        self._shared = None
        if self._link is not None:
            self._link.close()
            self._link = None

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detach(self) -> None:
        """Detach the program and remove every pin and the saved state."""
        with self._locked():
            if self._link is not None:
                with contextlib.suppress(OSError):
                    self._link.detach()
            self.close()
            shutil.rmtree(self.pin_dir, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)
        for root in (os.path.dirname(self.pin_dir), os.path.dirname(self.state_dir)):
            with contextlib.suppress(OSError):  # the last filter leaves no empty roots
                os.rmdir(root)

    # -- rules -------------------------------------------------------------------------------
    @property
    def iface(self) -> str:
        return self._state.iface

    @property
    def generation(self) -> int:
        return self._state.generation

    @property
    def sizes(self) -> Sizes:
        return self._state.sizes

    def rules(self) -> RuleSet:
        rs = self._state.ruleset
        return RuleSet(list(rs.rules), rs.default, rs.dry_run)

    def apply(self, ruleset: RuleSet) -> None:
        """Replace the whole rule set atomically (validated whole first; on any error the
        old set stays in force and nothing is left behind)."""
        with self._locked():
            self._reload_state()
            self._apply(ruleset)

    def add(self, rule: Rule, position: int | None = None) -> None:
        """Add one rule (last, or at ``position`` in priority order)."""
        with self._locked():
            self._reload_state()
            rs = self.rules()
            rs.rules.insert(len(rs.rules) if position is None else position, rule)
            self._apply(rs)

    def delete(self, name: str) -> None:
        """Remove the rule called ``name`` (:class:`NoSuchRule` if there is none)."""
        with self._locked():
            self._reload_state()
            rs = self.rules()
            keep = [r for r in rs.rules if r.name != name]
            if len(keep) == len(rs.rules):
                have = ", ".join(r.name for r in rs.rules[:10]) or "none"
                raise NoSuchRule(f"no rule named {name!r} (rules: {have})", rule=name)
            self._apply(replace(rs, rules=keep))

    def _apply(self, rs: RuleSet) -> None:
        from pyxdp.kernel import Program

        st = self._state
        slots = assign_slots(rs.rules, st.slots, st.sizes.rules)
        tables = compile_tables(rs, slots, st.sizes)
        new = replace(st, ruleset=rs, slots=slots, generation=st.generation + 1)
        path = os.path.join(self.state_dir, "state.json")
        fresh = {s for n, s in slots.items() if st.slots.get(n) != s}
        if fresh:
            self._reset_slots(fresh)
        gen = load_generation(tables, st.sizes, self.pin_dir)
        try:
            text = new.to_json()
            old_prog = self._gen.programs[PROGRAM] if self._gen is not None else None
            with contextlib.ExitStack() as stack:
                if old_prog is None:
                    old_prog = stack.enter_context(Program.from_id(self._link.info().prog_id))
                self._link.update(gen.programs[PROGRAM], old_prog=old_prog)
        except BaseException:
            gen.close()
            raise
        write_atomic(path, text)
        if self._gen is not None:
            self._gen.close()
        self._gen, self._state = gen, new

    def _reset_slots(self, slots: set[int]) -> None:
        """Zero the counters and rate buckets of slots a new rule takes over.  No running
        program writes them (their old rule is gone), so this cannot race with packets;
        a deleted rule's counters stay readable (:meth:`counter`) until then."""
        maps = self._maps()
        for s in slots:
            maps["stats"][s] = dp.Counter()
        stale = [k for k, _ in maps["buckets"].dump() if k.slot in slots]
        if stale:
            maps["buckets"].delete_batch(stale)

    # -- observation -------------------------------------------------------------------------
    def _maps(self) -> dict[str, Any]:
        if self._shared is None:
            from pyxdp.compiler.codecs import apply_codecs
            from pyxdp.kernel import Map

            info = compiled().info
            out = {}
            try:
                for name in ("stats", "buckets", "talkers", "clock"):
                    out[name] = apply_codecs(Map.from_pin(os.path.join(self.pin_dir, name)),
                                             info.maps[name])
            except BaseException:
                for m in out.values():
                    m.close()
                raise
            self._shared = out
        return self._shared

    def stats(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) per rule name, plus ``@default`` (matched no rule), ``@passed``
        and ``@dropped`` (in a dry run: would have been dropped)."""
        m = self._maps()["stats"]
        wanted = [*SPECIAL.values(), *self._state.slots.values()]
        # a few slots: single lookups; many: one batched walk of the whole map
        pairs = (m.dump() if len(wanted) > 256
                 else zip(wanted, m.lookup_batch(wanted), strict=True))
        totals = {}
        for slot, per_cpu in pairs:
            if per_cpu is not None:
                totals[slot] = (sum(c.packets for c in per_cpu),
                                sum(c.bytes for c in per_cpu))
        out = {name: totals.get(s, (0, 0)) for name, s in SPECIAL.items()}
        for name, s in self._state.slots.items():
            out[name] = totals.get(s, (0, 0))
        return out

    def top_talkers(self, n: int = 10) -> list[tuple[Address, int]]:
        """The ``n`` sources with the most dropped packets (LRU-bounded: see Sizes)."""
        out = []
        for k, count in self._maps()["talkers"].dump():
            if k.fam == 4:
                addr: Address = ipaddress.IPv4Address(k.lo & 0xFFFFFFFF)
            else:
                addr = ipaddress.IPv6Address(k.hi.to_bytes(8, "little")
                                             + k.lo.to_bytes(8, "little"))
            out.append((addr, count))
        out.sort(key=lambda x: (-x[1], x[0].version, x[0]))
        return out[:n]

    def slots(self) -> dict[str, int]:
        """Counter slot of every rule (and of ``@default``/``@passed``/``@dropped``)."""
        return {**SPECIAL, **self._state.slots}

    def counter(self, slot: int) -> tuple[int, int]:
        """(packets, bytes) of one counter slot, summed over CPUs."""
        per_cpu = self._maps()["stats"][slot]
        return sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu)

    def program_id(self) -> int:
        return self._link.info().prog_id

    # -- internals ---------------------------------------------------------------------------
    def _reload_state(self) -> None:
        """Another control plane may have applied rules since we read the state."""
        path = os.path.join(self.state_dir, "state.json")
        try:
            with open(path) as fh:
                text = fh.read()
        except FileNotFoundError:
            raise FilterError(f"{self.iface}: the filter was detached") from None
        d = json.loads(text)
        if d.get("generation") != self._state.generation:   # rules parsed only then
            st = FilterState.from_dict(d, path)
            if self._gen is not None:
                self._gen.close()
                self._gen = None
            self._state = st

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._link is None:
            raise FilterError(f"{self.iface}: this Filter was closed")
        try:
            fd = os.open(os.path.join(self.state_dir, "lock"), os.O_CREAT | os.O_RDWR, 0o600)
        except FileNotFoundError:
            raise FilterError(f"{self.iface}: the filter was detached") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return (f"<Filter {self.iface} generation {self.generation},"
                f" {len(self._state.ruleset.rules)} rules>")


def _clear_pins(pin_dir: str) -> None:
    for f in os.listdir(pin_dir):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(pin_dir, f))


__all__ = ["PIN_ROOT", "STATE_ROOT", "Filter", "FilterError", "NoSuchRule", "instance_name"]
