"""``pyxdp chain``: several XDP programs on one interface, changed atomically under traffic.

The data path is :mod:`pyxdp.chain` (a root program, a prog array, stages made from any XDP
program by exit rewriting).  This is its control plane on a real interface:

* **attach** loads an empty chain (the root returns the default verdict) and attaches the
  root through a bpf_link, pinned at ``<pin_root>/<iface>@netns<inode>/link``;
* **add / remove / move** build a whole new generation (prog array, every stage, root)
  and swap it in with one ``link.update``: a packet runs through the old chain or the new
  one, never half of each, and never meets an empty slot where a stage should be;
* each generation's prog array is pinned (``progs_g<N>``): the kernel empties a prog
  array when its last *user* reference goes, even while programs still use it, so an
  unpinned one would stop the chain at the root.  The previous generation's stays pinned
  too, until the next change, so packets still inside it when the link moves on finish
  their run through whole stages;
* a stage's own maps (counters, rule tables, ...) are pinned under ``maps/<stage>/`` and
  handed to every later generation, so a change keeps their contents;
* the state (stages, their priorities and verdicts, a copy of each object file) lives in
  ``<state_root>/<iface>@netns<inode>/``, written atomically under a lock, so a new
  control plane (another ``pyxdp chain`` command) picks it up.

Global data sections (``.data``/``.bss``/``.rodata``) are not carried over: a stage's
configuration comes from its object again, and its global variables start afresh in a new
generation; keep state that must survive in maps.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
from dataclasses import dataclass
from typing import Any

from pyxdp.abi import MapType, XdpAction
from pyxdp.apps._state import locked, write_atomic
from pyxdp.chain import (
    CAPTURE_MAP,
    CHAIN_MAP,
    Capture,
    ChainError,
    Generation,
    Stage,
    build,
    capture_map_spec,
)
from pyxdp.chain.rewrite import CAPTURE_BEFORE, CAPTURE_HEADER

PIN_ROOT = "/sys/fs/bpf/pyxdp-chain"
STATE_ROOT = "/run/pyxdp-chain"
STATE_VERSION = 1
VERDICTS = {a.name.lower(): int(a) for a in XdpAction}


def instance_name(iface: str) -> str:
    return f"{iface}@netns{os.stat('/proc/thread-self/ns/net').st_ino}"


def parse_verdicts(text: str | list[str]) -> frozenset[int]:
    """``"pass,drop"`` (or a list of names) as verdict numbers; unknown names refused."""
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    bad = [n for n in names if n not in VERDICTS]
    if bad or not names:
        raise ChainError(f"unknown verdict(s) {bad or names}: use {', '.join(VERDICTS)}")
    return frozenset(VERDICTS[n] for n in names)


def verdict_names(vs: frozenset[int]) -> list[str]:
    return [XdpAction(v).name.lower() for v in sorted(vs)]


@dataclass(frozen=True)
class StageRecord:
    """A stage as the state file keeps it."""

    name: str
    object: str                    # the copy in the state directory
    program: str | None
    priority: int
    continue_on: frozenset[int]
    tag: str | None = None         # an app's own mark of what the stage runs (its generation)

    def as_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "object": self.object, "program": self.program,
             "priority": self.priority, "continue_on": verdict_names(self.continue_on)}
        if self.tag is not None:
            d["tag"] = self.tag
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageRecord:
        return cls(str(d["name"]), str(d["object"]), d.get("program"), int(d["priority"]),
                   parse_verdicts(list(d["continue_on"])),
                   None if d.get("tag") is None else str(d["tag"]))


class Chain:
    """The chain on one interface (in the calling thread's network namespace)."""

    def __init__(self, iface: str, pin_root: str = PIN_ROOT, state_root: str = STATE_ROOT
                 ) -> None:
        self.iface = iface
        inst = instance_name(iface)
        self.pin_dir = os.path.join(pin_root, inst)
        self.state_dir = os.path.join(state_root, inst)
        self.state_file = os.path.join(self.state_dir, "state.json")
        self.stages: list[StageRecord] = []
        self.default = int(XdpAction.PASS)
        self.generation = 0
        self.mode: str | None = None
        # a running capture (pyxdp dump): {"snaplen", "sample", "pid"}, or None
        self.capture: dict[str, Any] | None = None

    # -- life cycle ---------------------------------------------------------------------
    @classmethod
    def attach(cls, iface: str, mode: str | None = None, *, default: str = "pass",
               pin_root: str = PIN_ROOT, state_root: str = STATE_ROOT) -> Chain:
        """Attach an empty chain to ``iface``: the root returns ``default`` until stages
        are added."""
        from pyxdp import xdp
        from pyxdp.kernel import ensure_bpffs
        from pyxdp.kernel._pin import make_pin_dir, private_bpffs_reason, remove_dirs

        ch = cls(iface, pin_root, state_root)
        ch.default = VERDICTS.get(default.lower(), -1)
        if ch.default < 0:
            raise ChainError(f"default verdict {default!r}: use {', '.join(VERDICTS)}")
        ch.mode = mode
        xdp.ifindex_of(iface)
        ensure_bpffs()
        with locked(ch.state_dir, create=True):
            if os.path.exists(ch.state_file):
                raise ChainError(f"{iface} already has a chain ({ch.state_file}); add stages"
                                 " to it, or detach it first")
            made = make_pin_dir(ch.pin_dir)
            try:
                why = private_bpffs_reason(ch.pin_dir)
                if why is not None:
                    raise ChainError(f"refusing to attach a chain to {iface}: {why}; use"
                                     " --netns NS from the host namespace instead")
                gen = ch._build([])
                try:
                    att = xdp.attach(iface, gen.root_program, mode)
                    if att.link is None:
                        att.detach()
                        raise ChainError(f"{iface}: the kernel gave no bpf_link; a chain"
                                         " needs one to swap generations atomically")
                    try:
                        gen.prog_array.pin(ch._progs_pin(0))
                        att.link.pin(os.path.join(ch.pin_dir, "link"))
                        ch._save()
                    except BaseException:
                        att.detach()
                        raise
                    att.link.close()
                finally:
                    gen.close()
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(ch.pin_dir, "link"))
                remove_dirs(made)
                shutil.rmtree(ch.state_dir, ignore_errors=True)
                raise
        return ch

    @classmethod
    def open(cls, iface: str, pin_root: str = PIN_ROOT, state_root: str = STATE_ROOT
             ) -> Chain:
        """Reopen the chain on ``iface``; a chain whose link no longer holds the interface
        (deleted and re-created, or detached from outside) says so and how to recover."""
        from pyxdp.kernel import Link

        ch = cls(iface, pin_root, state_root)
        ch._load()
        try:
            with Link.from_pin(os.path.join(ch.pin_dir, "link")) as link:
                severed = link.info().ifindex == 0
        except OSError:
            severed = True
        if severed:
            raise ChainError(f"{iface}: the chain's link no longer holds the interface (the"
                             " interface was deleted, or the link detached from outside):"
                             " `pyxdp chain detach` removes its state, then attach again")
        return ch

    def detach(self) -> None:
        """Detach the chain and remove its pins (stage maps included) and state."""
        from pyxdp.kernel import Link

        with locked(self.state_dir, create=False):
            link_pin = os.path.join(self.pin_dir, "link")
            if os.path.exists(link_pin):
                with Link.from_pin(link_pin) as link, contextlib.suppress(OSError):
                    link.detach()
            shutil.rmtree(self.pin_dir, ignore_errors=True)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            for root in (os.path.dirname(self.pin_dir), os.path.dirname(self.state_dir)):
                with contextlib.suppress(OSError):
                    os.rmdir(root)          # only when empty: other interfaces keep theirs

    # -- changes ------------------------------------------------------------------------
    def add(self, name: str, object_path: str, program: str | None = None, *,
            priority: int = 50, continue_on: str | list[str] = "pass") -> StageRecord:
        """Insert a stage (a copy of ``object_path`` is kept with the state)."""
        from pyxdp.elf import load_object

        if not name or "/" in name or name.startswith("."):
            raise ChainError(f"stage name {name!r}: a plain name is needed")
        verdicts = parse_verdicts(continue_on)
        with locked(self.state_dir, create=False):
            self._load()
            if any(s.name == name for s in self.stages):
                raise ChainError(f"{self.iface} has a stage {name!r} already")
            spec = load_object(object_path)          # refuse bad objects before copying
            Stage(name, spec, program).program_spec()
            os.makedirs(os.path.join(self.state_dir, "objects"), exist_ok=True)
            copy_path = os.path.join(self.state_dir, "objects", f"{name}.o")
            with open(object_path, "rb") as f:
                write_atomic(copy_path, f.read())
            rec = StageRecord(name, copy_path, program, int(priority), verdicts)
            try:
                self._swap([*self.stages, rec])
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(copy_path)
                raise
            return rec

    def set_stage(self, name: str, spec: Any, maps: dict[str, Any], *, priority: int = 50,
                  continue_on: str | list[str] = "pass", program: str | None = None,
                  tag: str | None = None) -> None:
        """Add or replace the stage ``name`` of an app (the filter, the router...): its
        object spec as the app built it (kept pickled with the chain's state) and the maps
        it runs with (the app's own, filled: they are the stage's from now on, pinned
        under ``maps/<name>/`` for later generations).  One atomic swap, like ``add``."""
        import pickle

        if not name or "/" in name or name.startswith("."):
            raise ChainError(f"stage name {name!r}: a plain name is needed")
        verdicts = parse_verdicts(continue_on)
        with locked(self.state_dir, create=False):
            self._load()
            Stage(name, spec, program).program_spec()
            os.makedirs(os.path.join(self.state_dir, "objects"), exist_ok=True)
            path = os.path.join(self.state_dir, "objects", f"{name}.spec")
            old = {s.name: s for s in self.stages}.get(name)
            backup = None
            if old is not None and os.path.exists(path):
                with open(path, "rb") as f:
                    backup = f.read()
            write_atomic(path, pickle.dumps(spec))
            rec = StageRecord(name, path, program, int(priority), verdicts, tag)
            rest = [s for s in self.stages if s.name != name]
            try:
                self._swap([*rest, rec], override={name: maps})
            except BaseException:
                if backup is not None:
                    write_atomic(path, backup)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                raise

    def has_stage(self, name: str) -> bool:
        self._load()
        return any(s.name == name for s in self.stages)

    def stage_tag(self, name: str) -> str | None:
        """The tag ``set_stage`` gave stage ``name`` (re-read from the saved state)."""
        self._load()
        return next((s.tag for s in self.stages if s.name == name), None)

    def link_ifindex(self) -> int:
        """The interface the chain's link holds (0: severed)."""
        from pyxdp.kernel import Link

        with Link.from_pin(os.path.join(self.pin_dir, "link")) as link:
            return int(link.info().ifindex)

    def stage_program_id(self, name: str) -> int:
        """The id of the program stage ``name`` runs as now (0 if none)."""
        from pyxdp.kernel import Map

        self._load()
        order_ = sorted(self.stages, key=lambda s: s.priority)
        slot = next((i for i, s in enumerate(order_) if s.name == name), None)
        if slot is None:
            return 0
        with Map.from_pin(self._progs_pin(self.generation)) as pa:
            try:
                return int(pa[slot])
            except KeyError:
                return 0

    def remove(self, name: str) -> None:
        with locked(self.state_dir, create=False):
            self._load()
            if not any(s.name == name for s in self.stages):
                raise ChainError(f"{self.iface} has no stage {name!r}"
                                 f" (stages: {', '.join(s.name for s in self.stages) or 'none'})")
            rest = [s for s in self.stages if s.name != name]
            self._swap(rest)
            shutil.rmtree(os.path.join(self.pin_dir, "maps", name), ignore_errors=True)
            for ext in (".o", ".spec"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.state_dir, "objects", f"{name}{ext}"))

    def move(self, name: str, priority: int) -> None:
        """Give a stage another priority (reorder)."""
        with locked(self.state_dir, create=False):
            self._load()
            recs = [StageRecord(s.name, s.object, s.program, int(priority), s.continue_on,
                                s.tag) if s.name == name else s for s in self.stages]
            if recs == self.stages:
                raise ChainError(f"{self.iface} has no stage {name!r}")
            self._swap(recs)

    # -- capture (pyxdp dump) -------------------------------------------------------------
    def start_capture(self, snaplen: int = 256, sample: int = 1,
                      ring_bytes: int = 1 << 22, where: str = "after") -> Any:
        """Swap in a generation that also writes every final verdict with its packet to a
        ring buffer (``where="after"``), each packet as it enters the chain ("before"), or
        both; returns the ring (a :class:`~pyxdp.kernel.Map`: ``drain()`` it,
        :func:`parse_capture` its records).  One capture at a time; one left behind by a
        dead process is taken over."""
        from pyxdp.kernel import KernelBackend

        if where not in ("after", "before", "both"):
            raise ChainError(f"capture where={where!r}: after, before or both")
        Capture(CAPTURE_MAP, snaplen, sample)            # validate before any change
        with locked(self.state_dir, create=False):
            self._load()
            if self.capture is not None and _alive(self.capture["pid"]):
                raise ChainError(f"{self.iface} is being captured already (pid"
                                 f" {self.capture['pid']})")
            pin = os.path.join(self.pin_dir, "capture_ring")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pin)
            ring = KernelBackend().create_map(capture_map_spec(ring_bytes))
            try:
                ring.pin(pin)
                self.capture = {"snaplen": snaplen, "sample": sample, "pid": os.getpid(),
                                "where": where}
                self._swap(self.stages)
            except BaseException:
                self.capture = None
                with contextlib.suppress(OSError):
                    os.unlink(pin)
                ring.close()
                raise
            return ring

    def stop_capture(self) -> None:
        """Swap back to the generation without capture code (it costs nothing then)."""
        with locked(self.state_dir, create=False):
            self._load()
            if self.capture is None:
                return
            self.capture = None
            self._swap(self.stages)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.pin_dir, "capture_ring"))

    # -- reading --------------------------------------------------------------------------
    def stage_maps(self, name: str) -> dict[str, Any]:
        """The pinned maps of stage ``name`` (open :class:`~pyxdp.kernel.Map` s; close
        them when done)."""
        from pyxdp.kernel import Map

        d = os.path.join(self.pin_dir, "maps", name)
        if not os.path.isdir(d):
            raise ChainError(f"{self.iface} has no stage {name!r}")
        return {m: Map.from_pin(os.path.join(d, m)) for m in sorted(os.listdir(d))}

    def status(self) -> dict[str, Any]:
        """The chain as saved now (re-read: another control plane may have changed it)."""
        from pyxdp.kernel import Link

        self._load()
        link_id = prog_id = 0
        with contextlib.suppress(OSError), \
                Link.from_pin(os.path.join(self.pin_dir, "link")) as link:
            info = link.info()
            link_id, prog_id = info.id, info.prog_id
        return {"iface": self.iface, "generation": self.generation,
                "default": XdpAction(self.default).name.lower(), "link_id": link_id,
                "root_prog_id": prog_id,
                "stages": [s.as_dict() for s in sorted(self.stages, key=lambda s: s.priority)]}

    # -- internals ----------------------------------------------------------------------
    def _stage(self, rec: StageRecord, maps: dict[str, Any]) -> Stage:
        from pyxdp.elf import load_object

        if rec.object.endswith(".spec"):          # an app's stage: its spec, pickled
            import pickle
            with open(rec.object, "rb") as f:
                spec = pickle.load(f)
            return Stage(rec.name, spec, rec.program, rec.priority, rec.continue_on,
                         maps=maps)
        return Stage(rec.name, load_object(rec.object), rec.program, rec.priority,
                     rec.continue_on, maps=maps)

    def _build(self, recs: list[StageRecord],
               override: dict[str, dict[str, Any]] | None = None) -> Generation:
        from pyxdp.kernel import KernelBackend, Map

        opened: list[Any] = []
        try:
            stages = []
            for rec in recs:
                if override and rec.name in override:
                    stages.append(self._stage(rec, dict(override[rec.name])))
                    continue
                d = os.path.join(self.pin_dir, "maps", rec.name)
                maps = {}
                if os.path.isdir(d):
                    for m in os.listdir(d):
                        mm = Map.from_pin(os.path.join(d, m))
                        opened.append(mm)
                        maps[m] = mm
                stages.append(self._stage(rec, maps))
            capture = ring = None
            if self.capture is not None:
                ring = Map.from_pin(os.path.join(self.pin_dir, "capture_ring"))
                opened.append(ring)
                where = self.capture.get("where", "after")
                capture = Capture(CAPTURE_MAP, self.capture["snaplen"],
                                  self.capture["sample"], after=where in ("after", "both"),
                                  before=where in ("before", "both"))
            gen = build(KernelBackend(), stages, default=self.default, capture=capture,
                        ring=ring)
        finally:
            for m in opened:       # the new generation's programs hold them now
                m.close()
        return gen

    def _pin_stage_maps(self, gen: Generation, skip: set[str] | None = None) -> list[str]:
        """Pin the maps of each stage that are not pinned yet; returns the new pins."""
        made = []
        for name, coll in gen.loaded.items():
            if skip and name in skip:
                continue
            d = os.path.join(self.pin_dir, "maps", name)
            os.makedirs(d, exist_ok=True)
            for mname, m in coll.maps.items():
                if mname in (CHAIN_MAP, CAPTURE_MAP) or mname.startswith(".") or \
                        m.spec.type == MapType.PROG_ARRAY:
                    continue
                path = os.path.join(d, mname)
                if not os.path.exists(path):
                    m.pin(path)
                    made.append(path)
        return made

    def _repin_stage_maps(self, name: str, gen: Generation) -> None:
        """Point the pins of stage ``name`` at the maps its new generation runs with."""
        d = os.path.join(self.pin_dir, "maps", name)
        os.makedirs(d, exist_ok=True)
        for mname, m in gen.loaded[name].maps.items():
            if mname in (CHAIN_MAP, CAPTURE_MAP) or mname.startswith(".") or \
                    m.spec.type == MapType.PROG_ARRAY:
                continue
            path = os.path.join(d, mname)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            m.pin(path)

    def _progs_pin(self, generation: int) -> str:
        return os.path.join(self.pin_dir, f"progs_g{generation}")

    def _swap(self, recs: list[StageRecord],
              override: dict[str, dict[str, Any]] | None = None) -> None:
        from pyxdp.kernel import Link

        gen = self._build(recs, override)
        try:
            made = self._pin_stage_maps(gen, skip=set(override or ()))
            made.append(self._progs_pin(self.generation + 1))
            try:
                gen.prog_array.pin(made[-1])
                with Link.from_pin(os.path.join(self.pin_dir, "link")) as link:
                    link.update(gen.root_program)
            except BaseException:
                for p in made:
                    with contextlib.suppress(OSError):
                        os.unlink(p)
                raise
            for name in override or ():          # the app's new maps replace its pins
                self._repin_stage_maps(name, gen)
            self.stages = recs
            self.generation += 1
            self._save()
            # the generation before the previous one is out of use: let it go
            for f in os.listdir(self.pin_dir):
                if f.startswith("progs_g") and int(f[7:]) < self.generation - 1:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.pin_dir, f))
        finally:
            gen.close()          # the link and the pins hold the new generation

    def _save(self) -> None:
        doc = {"version": STATE_VERSION, "iface": self.iface, "mode": self.mode,
               "default": self.default, "generation": self.generation,
               "capture": self.capture, "stages": [s.as_dict() for s in self.stages]}
        write_atomic(self.state_file, json.dumps(doc, indent=1))

    def _load(self) -> None:
        try:
            with open(self.state_file) as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise ChainError(f"{self.iface} has no chain (no {self.state_file}); attach one"
                             " with `pyxdp chain attach`") from None
        except (OSError, ValueError) as e:
            raise ChainError(f"{self.state_file}: unreadable chain state: {e}") from None
        if doc.get("version") != STATE_VERSION:
            raise ChainError(f"{self.state_file}: state version {doc.get('version')!r},"
                             f" this pyxdp reads {STATE_VERSION}")
        try:
            self.default = int(doc["default"])
            self.generation = int(doc["generation"])
            self.mode = doc.get("mode")
            cap = doc.get("capture")
            self.capture = None if cap is None else {
                **{k: int(cap[k]) for k in ("snaplen", "sample", "pid")},
                "where": str(cap.get("where", "after"))}
            self.stages = [StageRecord.from_dict(d) for d in doc["stages"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ChainError(f"{self.state_file}: malformed chain state ({e})") from None


@dataclass(frozen=True)
class Captured:
    """One captured packet: its final XDP verdict (None for a packet captured as it
    entered, before any program), where it came in, when (the kernel's monotonic ns), its
    length and the captured bytes."""

    verdict: XdpAction | None
    ifindex: int
    length: int
    time_ns: int
    data: bytes

    @property
    def before(self) -> bool:
        return self.verdict is None


def parse_capture(record: bytes) -> Captured:
    verdict, ifindex, length, caplen, t = struct.unpack_from("<IIIIQ", record, 0)
    if caplen > len(record) - CAPTURE_HEADER:
        raise ChainError(f"capture record of {len(record)} bytes claims {caplen} bytes")
    try:
        v = None if verdict == CAPTURE_BEFORE else XdpAction(verdict)
    except ValueError:
        raise ChainError(f"capture record with verdict {verdict}") from None
    return Captured(v, ifindex, length, t,
                    bytes(record[CAPTURE_HEADER:CAPTURE_HEADER + caplen]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


__all__ = ["PIN_ROOT", "STATE_ROOT", "Captured", "Chain", "ChainError", "StageRecord",
           "parse_capture", "parse_verdicts"]
