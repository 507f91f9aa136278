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
names.  A lock file serialises control planes working on the same filter (attach checks
for an existing filter under it); readers re-read the state without it (writes are atomic
renames).  :meth:`Filter.force_detach` recovers a filter whose link pin or state is lost.
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

from pyxdp import xdp
from pyxdp.apps.filter import dataplane as dp
from pyxdp.apps.filter.program import PROGRAM, compiled, load_generation
from pyxdp.apps.filter.rules import Rule, RuleError, RuleSet
from pyxdp.apps.filter.state import FilterState, normalise_ruleset, write_atomic
from pyxdp.apps.filter.tables import Sizes, assign_slots, compile_tables
from pyxdp.compiler.codecs import apply_codecs
from pyxdp.errors import PyxdpError
from pyxdp.kernel import (
    DEFAULT_BPFFS,
    KernelBackend,
    Link,
    Map,
    Program,
    ensure_bpffs,
    is_bpffs,
)

PIN_ROOT = "/sys/fs/bpf/pyxdp-filter"
STATE_ROOT = "/run/pyxdp-filter"
SPECIAL = {"@default": dp.SLOT_DEFAULT, "@passed": dp.SLOT_PASSED, "@dropped": dp.SLOT_DROPPED}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FilterError(PyxdpError):
    """The filter cannot do what was asked (no filter there, one already attached...)."""


class StaleGeneration(FilterError):
    """An :meth:`Filter.apply` with an ``expected_generation`` that is no longer current
    (another control plane changed the rules): nothing was changed."""

    def __init__(self, message: str, current: int) -> None:
        super().__init__(message)
        self.current = current


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
        self._state_id: tuple[int, int] | None = None   # state.json version read
        self._shared: dict[str, Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def attach(cls, iface: str, mode: str | None = None, rules: RuleSet | None = None,
               pin_root: str = PIN_ROOT, *, state_root: str = STATE_ROOT,
               sizes: Sizes | None = None, replace_stale: bool = False,
               chain: Any = None, priority: int = 10) -> Filter:
        """Attach a filter with ``rules`` (default: an empty allow-all set) to ``iface``.

        ``chain``: a :class:`~pyxdp.apps.chain.Chain` on ``iface`` to join as its stage
        ``filter`` (run at ``priority``, continuing on PASS), instead of attaching on a
        link of its own; None joins the chain attached with the default chain roots if
        there is one (the apps attach as stages when a chain exists), False never does.

        A filter state whose link no longer holds the interface (the interface was
        deleted and re-created, or someone detached the link) is *stale*: refused with
        the reason unless ``replace_stale``, which clears it first (``attach --replace``).
        """

        rs = normalise_ruleset(rules if rules is not None else RuleSet(), "Filter.attach")
        sizes = sizes or Sizes()
        ifindex = xdp.ifindex_of(iface)         # a clear error before anything is loaded
        name = instance_name(iface)
        pin_dir, state_dir = os.path.join(pin_root, name), os.path.join(state_root, name)
        slots = assign_slots(rs.rules, {}, sizes.rules)
        tables = compile_tables(rs, slots, sizes)
        if pin_root.startswith(DEFAULT_BPFFS + "/"):
            ensure_bpffs()
        elif not is_bpffs(os.path.dirname(pin_root.rstrip("/")) or "/"):
            raise FilterError(f"pin_root {pin_root} is not on a bpf filesystem")
        # the check for an existing filter and everything after it run under the lock, so
        # two concurrent attaches cannot both pass the check (and one undo the other)
        if os.path.exists(os.path.join(state_dir, "state.json")):
            why = _stale_reason(pin_dir, ifindex, state_dir)
            if why is not None and replace_stale:
                cls.force_detach(iface, pin_root, state_root=state_root)
            elif why is not None:
                raise FilterError(f"{iface} has the state of a filter that no longer runs"
                                  f" ({why}): `pyxdp filter attach --replace` clears it and"
                                  " attaches anew")
        from pyxdp.kernel._pin import private_bpffs_reason

        why_private = private_bpffs_reason(pin_root)
        if why_private is not None:
            raise FilterError(f"refusing to attach the filter to {iface}: {why_private};"
                              " run `pyxdp filter attach --netns NS ...` from the host"
                              " namespace instead")
        chain = _find_chain(iface, chain)
        with _lock(state_dir, create=True):
            if os.path.exists(os.path.join(state_dir, "state.json")):
                raise FilterError(f"{iface} already has a pyxdp filter ({state_dir}): use"
                                  " Filter.open, or detach it first")
            only_lock = os.listdir(state_dir) == ["lock"]
            made_pin_dir = not os.path.isdir(pin_dir)
            os.makedirs(pin_dir, exist_ok=True)
            state = FilterState(iface, ifindex, _netns(), mode, sizes, rs, slots, 1)
            if chain is not None:
                state.chain = {"pin_root": os.path.dirname(chain.pin_dir),
                               "state_root": os.path.dirname(chain.state_dir),
                               "stage": STAGE, "priority": int(priority)}
            gen = att = None
            staged = False
            link: Any = None
            try:
                # no state.json under the lock: pins here are leftovers of a crashed attach
                _clear_pins(pin_dir)
                gen = load_generation(tables, sizes, KernelBackend(), pin_dir)
                if chain is not None:
                    if chain.has_stage(STAGE):
                        raise FilterError(f"the chain on {iface} has a stage {STAGE!r}"
                                          " already")
                    link = _ChainLink(chain, STAGE, int(priority))
                    link.set(tables, sizes, gen, 1)
                    staged = True
                    write_atomic(os.path.join(state_dir, "state.json"),
                                 state.to_json(prog_id=1))
                else:
                    att = xdp.attach(iface, gen.programs[PROGRAM], mode)
                    if att.link is None:
                        raise FilterError(f"{iface}: attached without a bpf_link; the filter"
                                          " needs one for atomic rule changes")
                    att.link.pin(os.path.join(pin_dir, "link"))
                    link = att.link
                    prog: Any = gen.programs[PROGRAM]
                    write_atomic(os.path.join(state_dir, "state.json"),
                                 state.to_json(prog_id=prog.id))
            except BaseException:
                if staged:
                    with contextlib.suppress(Exception):
                        chain.remove(STAGE)
                if att is not None:
                    att.detach()
                if gen is not None:
                    gen.close()
                _clear_pins(pin_dir)        # only this attach pinned here (under the lock)
                if made_pin_dir:
                    with contextlib.suppress(OSError):
                        os.rmdir(pin_dir)
                if only_lock:       # nothing but our lock: waiters retry on a new one
                    shutil.rmtree(state_dir, ignore_errors=True)
                raise
        f = cls(state, pin_dir, state_dir, link)
        f._gen = gen
        return f

    @classmethod
    def open(cls, iface: str, pin_root: str = PIN_ROOT, *,
             state_root: str = STATE_ROOT) -> Filter:
        """Reopen the filter attached to ``iface`` (by this or an earlier process)."""

        name = instance_name(iface)
        pin_dir, state_dir = os.path.join(pin_root, name), os.path.join(state_root, name)
        path = os.path.join(state_dir, "state.json")
        try:
            with open(path) as fh:
                text = fh.read()
        except FileNotFoundError:
            if not os.path.exists(_prev_path(state_dir)):
                raise FilterError(f"{iface} has no pyxdp filter (no {path})") from None
            text = ""                    # a crash between renames: _recover decides
        except (OSError, UnicodeDecodeError):
            text = ""
        staged = _chain_of(text)
        try:
            link = (_ChainLink.reopen(iface, staged) if staged is not None
                    else Link.from_pin(os.path.join(pin_dir, "link")))
        except OSError as e:
            raise FilterError(f"{iface}: filter state exists but its link pin is gone"
                              f" ({e}); use Filter.force_detach (pyxdp filter detach"
                              " --force) and attach again") from None
        if isinstance(link, _ChainLink) and not link.chain.has_stage(link.stage):
            raise FilterError(f"{iface}: the filter's stage {link.stage!r} was removed from"
                              " the chain: `pyxdp filter attach --replace` attaches it anew"
                              " (or `pyxdp filter detach --force` removes its state)")
        try:
            severed = link.info().ifindex == 0
        except OSError:
            severed = True
        if severed:
            link.close()
            raise FilterError(f"{iface}: the filter's link no longer holds the interface (the"
                              " interface was deleted, or the link was detached from"
                              " outside): `pyxdp filter attach --replace` attaches it anew"
                              " (or `pyxdp filter detach --force` removes it)")
        try:
            with _lock(state_dir, create=False):
                text = _recover(state_dir, link, text)
        except FileNotFoundError:
            link.close()
            raise FilterError(f"{iface} has no pyxdp filter (no {path})") from None
        except BaseException:
            link.close()
            raise
        state = FilterState.from_json(text, path)
        f = cls(state, pin_dir, state_dir, link)
        f._state_id = _file_id(path)
        return f

    @classmethod
    def force_detach(cls, iface: str, pin_root: str = PIN_ROOT, *,
                     state_root: str = STATE_ROOT) -> list[str]:
        """Recovery when :meth:`open` cannot work (link pin gone, state unreadable): detach
        the pinned link if there is one, else the XDP program on ``iface`` if it is this
        filter's (by program name), and remove the pins and the saved state.  Returns what
        was done, for the operator."""

        name = instance_name(iface)
        pin_dir, state_dir = os.path.join(pin_root, name), os.path.join(state_root, name)
        done: list[str] = []
        with _lock(state_dir, create=True):
            link_pin = os.path.join(pin_dir, "link")
            detached = False
            staged = None
            with contextlib.suppress(OSError, UnicodeDecodeError), \
                    open(os.path.join(state_dir, "state.json")) as fh:
                staged = _chain_of(fh.read())
            if staged is not None:
                try:
                    cl = _ChainLink.reopen(iface, staged)
                    if cl.chain.has_stage(cl.stage):
                        cl.detach()
                        done.append(f"removed stage {cl.stage!r} from the chain on {iface}")
                    detached = True
                except Exception as e:
                    done.append(f"could not reach the chain ({e})")
            try:
                with Link.from_pin(link_pin) as link:
                    link.detach()
                detached = True
                done.append(f"detached the pinned link {link_pin}")
            except OSError:
                pass
            if not detached:
                with contextlib.suppress(xdp.XdpError):
                    for a in xdp.status(iface).attachments:
                        if a.prog_name == PROGRAM:
                            xdp.detach(iface, a.mode)
                            done.append(f"detached program {a.prog_name!r} (id {a.prog_id})"
                                        f" from {iface} ({a.mode.value} mode)")
            if os.path.isdir(pin_dir):
                shutil.rmtree(pin_dir, ignore_errors=True)
                done.append(f"removed {pin_dir}")
            if os.path.exists(os.path.join(state_dir, "state.json")):
                done.append(f"removed {state_dir}")
            shutil.rmtree(state_dir, ignore_errors=True)
        for root in (pin_root, state_root):
            with contextlib.suppress(OSError):
                os.rmdir(root)
        return done

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
        self._refresh()
        return self._state.generation

    @property
    def sizes(self) -> Sizes:
        return self._state.sizes

    def rules(self) -> RuleSet:
        """The rule set in force (re-read if another control plane changed it)."""
        self._refresh()
        return self._ruleset()

    def _ruleset(self) -> RuleSet:
        rs = self._state.ruleset
        return RuleSet(list(rs.rules), rs.default, rs.dry_run)

    def snapshot(self) -> tuple[RuleSet, int]:
        """The rule set in force and its generation, read together: hand the generation
        to :meth:`apply` as ``expected_generation`` for a read-modify-write that cannot
        overwrite another control plane's change."""
        self._refresh()
        return self._ruleset(), self._state.generation

    def apply(self, ruleset: RuleSet, *, expected_generation: int | None = None) -> None:
        """Replace the whole rule set atomically (validated whole first; on any error the
        old set stays in force and nothing is left behind).  With
        ``expected_generation`` (from :meth:`snapshot`) the change is made only if no
        other control plane changed the rules since: else :class:`StaleGeneration`."""
        ruleset = normalise_ruleset(ruleset, "Filter.apply")
        with self._locked():
            self._reload_state()
            if expected_generation is not None and \
                    self._state.generation != expected_generation:
                raise StaleGeneration(
                    f"{self.iface}: the rules changed since generation {expected_generation}"
                    f" (now {self._state.generation}); read them again (snapshot()) and"
                    " reapply your change", self._state.generation)
            self._apply(ruleset)

    def add(self, rule: Rule, position: int | None = None) -> None:
        """Add one rule (last, or at ``position`` in priority order)."""
        rule = _one_rule(rule, "Filter.add")
        with self._locked():
            self._reload_state()
            rs = self._ruleset()
            rs.rules.insert(len(rs.rules) if position is None else position, rule)
            self._apply(rs)

    def upsert(self, rule: Rule) -> bool:
        """Replace the rule of the same name in place (keeping its priority, counters and
        rate state), or append it; read, change and apply under the lock, so a concurrent
        add or delete is never reverted.  True when a rule was replaced."""
        rule = _one_rule(rule, "Filter.upsert")
        with self._locked():
            self._reload_state()
            rs = self._ruleset()
            names = [r.name for r in rs.rules]
            replaced = rule.name in names
            if replaced:
                rs.rules[names.index(rule.name)] = rule
            else:
                rs.rules.append(rule)
            self._apply(rs)
            return replaced

    def delete(self, name: str) -> None:
        """Remove the rule called ``name`` (:class:`NoSuchRule` if there is none)."""
        with self._locked():
            self._reload_state()
            rs = self._ruleset()
            keep = [r for r in rs.rules if r.name != name]
            if len(keep) == len(rs.rules):
                have = ", ".join(r.name for r in rs.rules[:10]) or "none"
                raise NoSuchRule(f"no rule named {name!r} (rules: {have})", rule=name)
            self._apply(replace(rs, rules=keep))

    def _apply(self, rs: RuleSet) -> None:
        st = self._state
        slots = assign_slots(rs.rules, st.slots, st.sizes.rules)
        tables = compile_tables(rs, slots, st.sizes)
        new = replace(st, ruleset=rs, slots=slots, generation=st.generation + 1)
        path = os.path.join(self.state_dir, "state.json")
        fresh = {s for n, s in slots.items() if st.slots.get(n) != s}
        # a slot another rule of the old set still counts into (only reused when the
        # table is full) is zeroed after the swap, never while the old program writes it
        reused = fresh & set(st.slots.values())
        if fresh - reused:
            self._reset_slots(fresh - reused)
        gen = load_generation(tables, st.sizes, KernelBackend(), self.pin_dir)
        # crash consistency: the new state is written (as state.next.json, naming its
        # program) before the swap and committed by one rename after it; the state in
        # force is kept as state.prev.json.  Whatever moment a crash hits, the next open
        # finds the state whose program the link runs (see _recover).
        next_path, prev_path = _next_path(self.state_dir), _prev_path(self.state_dir)
        if isinstance(self._link, _ChainLink):
            # as a chain stage: the states name the filter generation the chain's stage
            # record is tagged with (what _recover compares), and the chain swaps
            new_text = new.to_json(prog_id=new.generation)
            try:
                write_atomic(prev_path, st.to_json(prog_id=st.generation))
                write_atomic(next_path, new_text)
                self._link.set(tables, st.sizes, gen, new.generation)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(next_path)
                gen.close()
                raise
            os.replace(next_path, path)        # a crash before: _recover commits it
            write_atomic(_bak_path(self.state_dir), new_text)
            if reused:
                self._reset_slots(reused)
            if self._gen is not None:
                self._gen.close()
            self._gen, self._state = gen, new
            self._state_id = _file_id(path)
            return
        with contextlib.ExitStack() as stack:
            try:
                old_prog = self._gen.programs[PROGRAM] if self._gen is not None else None
                if old_prog is None:
                    old_prog = stack.enter_context(Program.from_id(self._link.info().prog_id))
                new_prog: Any = gen.programs[PROGRAM]
                new_text = new.to_json(prog_id=new_prog.id)
                write_atomic(prev_path, st.to_json(prog_id=old_prog.id))
                write_atomic(next_path, new_text)
                self._link.update(gen.programs[PROGRAM], old_prog=old_prog)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(next_path)
                gen.close()
                raise
            try:
                os.replace(next_path, path)
                write_atomic(_bak_path(self.state_dir), new_text)   # a spare of the current
            except BaseException:
                # the saved state must describe the program in force: put the old one back
                with contextlib.suppress(OSError):
                    self._link.update(old_prog, old_prog=gen.programs[PROGRAM])
                with contextlib.suppress(OSError):
                    os.unlink(next_path)
                gen.close()
                raise
        if reused:
            self._reset_slots(reused)
        if self._gen is not None:
            self._gen.close()
        self._gen, self._state = gen, new
        self._state_id = _file_id(path)

    def _reset_slots(self, slots: set[int]) -> None:
        """Zero the counters and rate buckets of slots a new rule takes over.  Slots no
        rule of the running program uses are reset before the swap, so this cannot race
        with packets; a deleted rule's counters stay readable (:meth:`counter`) until a
        later change needs its slot."""
        maps = self._maps()
        for s in slots:
            maps["stats"][s] = dp.Counter()
        stale = [k for k, _ in maps["buckets"].dump() if k.slot in slots]
        if stale:
            maps["buckets"].delete_batch(stale)

    # -- observation -------------------------------------------------------------------------
    def _maps(self) -> dict[str, Any]:
        if self._shared is None:
            info = compiled().info
            out: dict[str, Map] = {}
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
        self._refresh()
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
        self._refresh()
        return {**SPECIAL, **self._state.slots}

    def counter(self, slot: int) -> tuple[int, int]:
        """(packets, bytes) of one counter slot, summed over CPUs."""
        per_cpu = self._maps()["stats"][slot]
        return sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu)

    def program_id(self) -> int:
        if isinstance(self._link, _ChainLink):
            return self._link.program_id()
        return self._link.info().prog_id

    @property
    def chain_stage(self) -> str | None:
        """The stage name when the filter runs inside a pyxdp chain, else None."""
        return self._link.stage if isinstance(self._link, _ChainLink) else None

    # -- internals ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Lock-free re-read for the accessors: a long-running reader (the metrics
        exporter) must name counters by the slots in force, not those it saw at open.
        State writes are atomic renames, so a read sees one whole state; a new file (a
        new inode) is the cheap sign that something changed."""
        path = os.path.join(self.state_dir, "state.json")
        if _file_id(path) != self._state_id:
            self._reload_state()

    def _reload_state(self) -> None:
        """Another control plane may have applied rules since we read the state."""
        path = os.path.join(self.state_dir, "state.json")
        try:
            with open(path) as fh:
                ident = _file_id(fh.fileno())
                text = fh.read()
        except FileNotFoundError:
            raise FilterError(f"{self.iface}: the filter was detached") from None
        try:
            d = json.loads(text)
        except ValueError as e:
            raise RuleError(f"corrupt filter state: {e}", path) from None
        if d.get("generation") != self._state.generation:   # rules parsed only then
            st = FilterState.from_dict(d, path)
            if self._gen is not None:
                self._gen.close()
                self._gen = None
            self._state = st
        self._state_id = ident

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self._link is None:
            raise FilterError(f"{self.iface}: this Filter was closed")
        try:
            with _lock(self.state_dir, create=False):
                if os.path.exists(_next_path(self.state_dir)):   # a crashed change
                    path = os.path.join(self.state_dir, "state.json")
                    try:
                        with open(path) as fh:
                            text = fh.read()
                    except (OSError, UnicodeDecodeError):
                        text = ""
                    _recover(self.state_dir, self._link, text)
                yield
        except FileNotFoundError:
            raise FilterError(f"{self.iface}: the filter was detached") from None

    def __repr__(self) -> str:
        return (f"<Filter {self.iface} generation {self.generation},"
                f" {len(self._state.ruleset.rules)} rules>")


def _one_rule(rule: Rule, where: str) -> Rule:
    """``rule`` as it will be saved and re-read (see :func:`normalise_ruleset`)."""
    return normalise_ruleset(RuleSet([rule]), where).rules[0]


def _file_id(path: str | int) -> tuple[int, int] | None:
    """Identity of the state file's current version (atomic writes make a new inode)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


@contextlib.contextmanager
def _lock(state_dir: str, *, create: bool) -> Iterator[None]:
    """Hold ``<state_dir>/lock``.  A detach removes the directory (lock file included)
    while holding it: a waiter that then gets the lock on the removed file retries on the
    current one (``create``) or reports the directory gone (FileNotFoundError)."""
    path = os.path.join(state_dir, "lock")
    while True:
        if create:
            os.makedirs(state_dir, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                yield
                return
            if not create:
                raise FileNotFoundError(path)
        finally:
            os.close(fd)


def _stale_reason(pin_dir: str, ifindex: int, state_dir: str | None = None) -> str | None:
    """Why the filter state next to ``pin_dir`` describes no running filter, or None."""
    staged = None
    if state_dir is not None:
        with contextlib.suppress(OSError, UnicodeDecodeError), \
                open(os.path.join(state_dir, "state.json")) as fh:
            staged = _chain_of(fh.read())
    try:
        if staged is not None:
            cl = _ChainLink.reopen(os.path.basename(pin_dir).split("@netns")[0], staged)
            if not cl.chain.has_stage(cl.stage):
                return f"its chain has no stage {cl.stage!r}"
            info = cl.info()
        else:
            with Link.from_pin(os.path.join(pin_dir, "link")) as link:
                info = link.info()
    except OSError:
        return "its link pin is gone"
    if info.ifindex == 0:
        return "its link was severed: the interface was deleted or the link detached"
    if info.ifindex != ifindex:
        return f"its link holds ifindex {info.ifindex}, the interface is now {ifindex}"
    return None


def _next_path(state_dir: str) -> str:
    return os.path.join(state_dir, "state.next.json")


def _prev_path(state_dir: str) -> str:
    return os.path.join(state_dir, "state.prev.json")


def _bak_path(state_dir: str) -> str:
    return os.path.join(state_dir, "state.bak.json")


def _prog_id_of(text: str) -> int | None:
    try:
        d = json.loads(text)
    except ValueError:
        return None
    v = d.get("prog_id") if isinstance(d, dict) else None
    return v if isinstance(v, int) else None


def _recover(state_dir: str, link: Any, text: str) -> str:
    """Under the state lock: finish or undo a change a crash interrupted, and return the
    state text that describes the program the link runs.

    * ``state.next.json`` left behind: committed if its program is the one running (the
      crash came after the swap), else dropped (it came before);
    * ``state.json`` unreadable (torn, emptied): rebuilt from whichever of the previous,
      next and current states names the running program;
    * temporary files of dead processes are removed."""
    import glob

    from pyxdp.apps.filter.state import write_atomic as _write

    for tmp in glob.glob(os.path.join(state_dir, "state*.json.tmp*")):
        pid = tmp.rsplit(".tmp", 1)[1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    try:
        running = link.info().prog_id
    except OSError:
        return text
    path = os.path.join(state_dir, "state.json")
    candidates = []
    for p in (_next_path(state_dir), path, _bak_path(state_dir), _prev_path(state_dir)):
        try:
            with open(p) as fh:
                candidates.append((p, fh.read()))
        except (OSError, UnicodeDecodeError):
            continue
    nxt = dict(candidates).get(_next_path(state_dir))
    if nxt is not None:
        if _prog_id_of(nxt) == running:
            os.replace(_next_path(state_dir), path)
            return nxt
        with contextlib.suppress(OSError):
            os.unlink(_next_path(state_dir))
    try:
        json.loads(text)
        ok = True
    except ValueError:
        ok = False
    if ok and _prog_id_of(text) in (None, running):
        return text
    for _p, t in candidates:
        if _prog_id_of(t) == running:
            _write(path, t)
            return t
    if ok:
        return text
    raise FilterError(f"{path}: the filter state is unreadable and no saved state"
                      f" (state.bak.json, state.prev.json, state.next.json) names the"
                      f" running program"
                      f" {running}; use Filter.force_detach (pyxdp filter detach --force)")


STAGE = "filter"


class _ChainLink:
    """What a :class:`Filter` needs of its bpf_link when it runs as a stage of a pyxdp
    chain: ``info()`` (the interface the chain holds, and as "program id" the filter
    generation the chain's stage record is tagged with, which the saved states name),
    ``set`` (swap in a generation: one atomic chain swap), ``detach`` (leave the chain)."""

    def __init__(self, chain: Any, stage: str, priority: int) -> None:
        self.chain, self.stage, self.priority = chain, stage, priority

    @classmethod
    def reopen(cls, iface: str, d: dict[str, Any]) -> _ChainLink:
        from pyxdp.apps.chain import Chain, ChainError

        try:
            ch = Chain.open(iface, d["pin_root"], d["state_root"])
        except ChainError as e:
            raise OSError(2, f"its chain is gone ({e})") from None
        return cls(ch, d["stage"], int(d.get("priority", 10)))

    def info(self) -> Any:
        from types import SimpleNamespace

        tag = self.chain.stage_tag(self.stage)
        return SimpleNamespace(prog_id=int(tag) if tag and tag.isdigit() else 0,
                               ifindex=self.chain.link_ifindex())

    def set(self, tables: Any, sizes: Any, gen: Any, generation: int) -> None:
        from pyxdp.apps.filter.program import generation_spec

        spec = generation_spec(tables, sizes)
        maps = {n: m for n, m in gen.maps.items() if not n.startswith(".")}
        self.chain.set_stage(self.stage, spec, maps, priority=self.priority,
                             continue_on="pass", tag=str(generation))

    def program_id(self) -> int:
        return int(self.chain.stage_program_id(self.stage))

    def detach(self) -> None:
        self.chain.remove(self.stage)

    def close(self) -> None:
        pass


def _find_chain(iface: str, chain: Any) -> Any:
    """The chain to join: the one given, the one on ``iface`` under the default chain
    roots (None), or none (False)."""
    if chain is False:
        return None
    if chain is not None:
        return chain
    from pyxdp.apps.chain import Chain, ChainError

    try:
        return Chain.open(iface)
    except (ChainError, OSError):
        return None


def _chain_of(text: str) -> dict[str, Any] | None:
    try:
        d = json.loads(text).get("chain")
    except (ValueError, AttributeError):
        return None
    return d if isinstance(d, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_pins(pin_dir: str) -> None:
    for f in os.listdir(pin_dir):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(pin_dir, f))


__all__ = ["PIN_ROOT", "STATE_ROOT", "Filter", "FilterError", "NoSuchRule", "StaleGeneration",
           "instance_name"]
