"""Many XDP programs on one interface: a root program and a prog array of stages.

Katran's root-program model with libxdp's ``chain_call_actions`` semantics, and no
freplace (``BPF_PROG_TYPE_EXT``) or fentry, which this kind of sandbox refuses:

* the **root** program tail-calls slot 0 of the chain's prog array, and returns the
  chain's default verdict when the slot is empty;
* **stage** ``i`` sits in slot ``i``; it is the stage's own program rewritten by
  :func:`pyxdp.chain.rewrite.chain_stage`, so a verdict in its ``continue_on`` set
  tail-calls slot ``i + 1`` and any other verdict ends the chain;
* a change (insert, remove, reorder) builds a whole new **generation** — prog array,
  stages, root — and swaps it in with one link update, so a packet runs entirely in the
  old chain or entirely in the new one.

:func:`build` works on any :class:`~pyxdp.backend.Backend` (the kernel, or the emulator
for tests without root); :mod:`pyxdp.chain.kernel` attaches and pins it on an interface.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyxdp.abi import AttachType, MapType, ProgType, XdpAction
from pyxdp.chain.rewrite import Capture, ChainError, capture_program, chain_stage
from pyxdp.isa import LD_IMM64, Class, Instruction, JmpOp, PseudoSrc
from pyxdp.maps import MapSpec
from pyxdp.spec import MapRef, ObjectSpec, ProgramSpec

CHAIN_MAP = "pyxdp_chain"
CAPTURE_MAP = "pyxdp_capture"
CAPTURE_RING_BYTES = 1 << 22           # 4 MiB: ~14k records of 256 bytes
MAX_STAGES = 32          # the kernel follows at most 33 tail calls; the root makes one
ROOT = "pyxdp_root"


@dataclass(frozen=True)
class Stage:
    """One program of a chain: ``program`` of ``obj`` (default: its only XDP program),
    run in ascending ``priority`` order (ties: the order given), continuing to the next
    stage on the verdicts in ``continue_on``."""

    name: str
    obj: ObjectSpec
    program: str | None = None
    priority: int = 50
    continue_on: frozenset[int] = frozenset({XdpAction.PASS})
    # existing maps to load the stage with (map name -> map of the backend): its state
    # carried over from an earlier generation
    maps: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def program_spec(self) -> ProgramSpec:
        return self.obj.program(self.program, None if self.program else ProgType.XDP)


def chain_map_spec() -> MapSpec:
    return MapSpec(CHAIN_MAP, MapType.PROG_ARRAY, 4, 4, MAX_STAGES)


def capture_map_spec(size: int = CAPTURE_RING_BYTES) -> MapSpec:
    return MapSpec(CAPTURE_MAP, MapType.RINGBUF, 0, 0, size)


def root_program(default: int = XdpAction.PASS, capture: Capture | None = None,
                 ring_spec: MapSpec | None = None) -> ObjectSpec:
    """The root: ``bpf_tail_call(ctx, chain, 0); return default`` (the default verdict
    captured too, with ``capture``)."""
    insns = [
        Instruction(LD_IMM64, dst=2, src=PseudoSrc.MAP_FD),
        Instruction(Class.ALU64 | 0xB0, dst=3, imm=0),           # r3 = 0
        Instruction(Class.JMP | JmpOp.CALL, imm=12),             # bpf_tail_call
        Instruction(Class.ALU64 | 0xB0, dst=0, imm=int(default)),
        Instruction(Class.JMP | JmpOp.EXIT),
    ]
    # expected_attach_type XDP as libbpf gives "xdp" sections: the kernel only lets
    # programs with the same one share a prog array (the tail call is refused otherwise)
    prog = ProgramSpec(name=ROOT, type=ProgType.XDP, instructions=insns, section="xdp",
                       expected_attach_type=AttachType.XDP, map_refs={0: MapRef(CHAIN_MAP)})
    maps = {CHAIN_MAP: chain_map_spec()}
    if capture is not None:
        prog = capture_program(prog, capture)
        maps[capture.ring] = ring_spec or capture_map_spec()
    return ObjectSpec(programs={ROOT: prog}, maps=maps)


def stage_object(stage: Stage, slot: int, capture: Capture | None = None,
                 ring_spec: MapSpec | None = None) -> ObjectSpec:
    """The stage's object with only its program, rewritten for ``slot``, and the chain map
    (and capture ring) declared: the loader is given the generation's maps for them."""
    spec = stage.program_spec()
    for name in (CHAIN_MAP, CAPTURE_MAP):
        if name in stage.obj.maps:
            raise ChainError(f"stage {stage.name!r}: the object already has a map called"
                             f" {name!r}")
    obj = copy.copy(stage.obj)
    obj.programs = {spec.name: chain_stage(spec, CHAIN_MAP, slot + 1, stage.continue_on,
                                           capture)}
    obj.maps = {**stage.obj.maps, CHAIN_MAP: chain_map_spec()}
    if capture is not None:
        obj.maps[capture.ring] = ring_spec or capture_map_spec()
    obj.map_slots = {m: s for m, s in stage.obj.map_slots.items()
                     if stage.obj.maps[m].type != MapType.PROG_ARRAY}
    return obj


def order(stages: Iterable[Stage]) -> list[Stage]:
    """Stages in run order (stable by priority), refusing duplicate names."""
    out = sorted(stages, key=lambda s: s.priority)
    names = [s.name for s in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ChainError(f"stage names must be unique: {sorted(dup)} given twice")
    if len(out) > MAX_STAGES:
        raise ChainError(f"{len(out)} stages: a chain holds at most {MAX_STAGES}")
    return out


@dataclass
class Generation:
    """One built chain: its prog array, the loaded stages (name -> collection) and the
    root; closing it releases what the kernel does not still hold."""

    stages: list[Stage]
    prog_array: Any
    root: Any                                  # the root's collection
    loaded: dict[str, Any] = field(default_factory=dict)

    @property
    def root_program(self) -> Any:
        return self.root.programs[ROOT]

    def stage_program(self, name: str) -> Any:
        coll = self.loaded[name]
        (prog,) = coll.programs.values()
        return prog

    def close(self) -> None:
        for coll in self.loaded.values():
            coll.close()
        self.root.close()
        close = getattr(self.prog_array, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Generation:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def build(backend: Any, stages: Sequence[Stage], *, default: int = XdpAction.PASS,
          capture: Capture | None = None, ring: Any = None) -> Generation:
    """Load a whole chain generation through ``backend``; nothing is left behind when a
    stage cannot be loaded (the error names the stage).  With ``capture``, every verdict
    that ends the chain is written with its packet to ``ring`` (a ring buffer map of the
    backend, :func:`capture_map_spec`)."""
    if (capture is None) != (ring is None):
        raise ChainError("a capture needs its ring buffer map, and a ring its capture")
    run = order(stages)
    pa = backend.create_map(chain_map_spec())
    gen = Generation(run, pa, None)
    shared = {CHAIN_MAP: pa}
    if capture is not None:
        shared[capture.ring] = ring
    try:
        for slot, st in enumerate(run):
            obj = stage_object(st, slot, capture, ring.spec if ring is not None else None)
            try:
                coll = backend.load(obj, maps={**st.maps, **shared})
            except ChainError:
                raise
            except Exception as e:
                raise ChainError(f"stage {st.name!r} does not load as a chain stage: {e}"
                                 ) from e
            gen.loaded[st.name] = coll
            pa[slot] = gen.stage_program(st.name)
        gen.root = backend.load(
            root_program(default, capture, ring.spec if ring is not None else None),
            maps=shared)
    except BaseException:
        for coll in gen.loaded.values():
            coll.close()
        close = getattr(pa, "close", None)
        if close is not None:
            close()
        raise
    return gen


__all__ = ["CAPTURE_MAP", "CHAIN_MAP", "MAX_STAGES", "ROOT", "Capture", "ChainError",
           "Generation", "Stage", "build", "capture_map_spec", "chain_map_spec", "order",
           "root_program", "stage_object"]
