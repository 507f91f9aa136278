"""The emulator side of :mod:`pyxdp.backend`: the same specs, run in pure Python.

:class:`EmuBackend` creates emulated maps and translates programs; its ``load`` follows
the kernel loader's contract (initial data, prog-array slots, pins by name, nothing left
behind on failure), so an app written against :class:`~pyxdp.backend.Backend` runs
unchanged without root.  Pins are kept by the backend instance: two loads through one
``EmuBackend`` with the same ``pin_path`` share their ``LIBBPF_PIN_BY_NAME`` maps, the way
two kernel loads share a bpffs pin.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType

from pyxdp.abi import LIBBPF_PIN_BY_NAME, MapType
from pyxdp.backend import Variable
from pyxdp.emu.machine import Machine
from pyxdp.emu.maps import EmuMap, create_map, readonly_data_name
from pyxdp.emu.program import EmuProgram, load
from pyxdp.errors import EmulatorError, MapError
from pyxdp.maps import MapSpec, check_reuse_compat
from pyxdp.spec import ObjectSpec


class EmuCollection:
    """The emulated maps, programs and variables of one object."""

    def __init__(self) -> None:
        self.programs: dict[str, EmuProgram] = {}
        self.maps: dict[str, EmuMap] = {}
        self.variables: dict[str, Variable] = {}

    def close(self) -> None:
        """Nothing to release outside Python; kept for the protocol (and ``with``)."""

    def __enter__(self) -> EmuCollection:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.programs)

    def __repr__(self) -> str:
        return (f"<EmuCollection programs={list(self.programs)} maps={list(self.maps)}"
                f" variables={list(self.variables)}>")


class EmuBackend:
    """Loads into :mod:`pyxdp.emu`.  ``ncpus`` sets the per-CPU map width (default: this
    machine's possible CPUs, like the kernel); ``budget`` caps executed instructions;
    ``clock`` replaces the monotonic clock ``bpf_ktime_get_ns`` reads (simulated time)."""

    name = "emulator"

    def __init__(self, *, ncpus: int | None = None, budget: int | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.ncpus = ncpus
        self.budget = budget
        self.clock = clock
        self.pins: dict[str, EmuMap] = {}

    def create_map(self, spec: MapSpec) -> EmuMap:
        return create_map(spec, ncpus=self.ncpus)

    def _map(self, name: str, spec: MapSpec, pin_path: str | None,
             new_pins: list[str]) -> EmuMap:
        pin = (os.path.join(pin_path, spec.name)
               if pin_path and spec.pinning == LIBBPF_PIN_BY_NAME else None)
        if pin is not None and pin in self.pins:
            m = self.pins[pin]
            check_reuse_compat(name, m.spec, spec)
            return m
        m = create_map(spec, ncpus=self.ncpus)
        m.prog_readonly = readonly_data_name(name)
        if pin is not None:
            self.pins[pin] = m
            new_pins.append(pin)
        return m

    def load(self, obj: ObjectSpec, *, pin_path: str | None = None,
             maps: Mapping[str, EmuMap] | None = None) -> EmuCollection:
        coll = EmuCollection()
        given = dict(maps or {})
        unknown = set(given) - set(obj.maps)
        if unknown:
            raise MapError(f"maps given for {sorted(unknown)}, which the object does not"
                           " declare")
        new_pins: list[str] = []
        if obj.externs:
            names = ", ".join(f"{e.name} ({e.kind})" for e in obj.externs.values())
            raise EmulatorError(f"object has externs the emulator cannot resolve (it has no"
                                f" kernel config, symbols or kfuncs): {names}")
        try:
            for name, spec in obj.maps.items():
                if name in given:
                    check_reuse_compat(name, given[name].spec, spec)
                    coll.maps[name] = given[name]
                    continue
                coll.maps[name] = self._map(name, spec, pin_path, new_pins)
            for vname, var in obj.variables.items():
                if var.map_name in coll.maps:
                    coll.variables[vname] = Variable(var, coll.maps[var.map_name])
            machine = Machine(clock=self.clock)
            if self.budget is not None:
                machine.budget = self.budget
            for pname, pspec in obj.programs.items():
                coll.programs[pname] = load(pspec, maps=coll.maps, machine=machine)
            for mname, slots in obj.map_slots.items():
                is_progs = obj.maps[mname].type == MapType.PROG_ARRAY
                source: dict[str, EmuProgram] | dict[str, EmuMap] = (
                    coll.programs if is_progs else coll.maps)
                for idx, what in slots.items():
                    if what not in source:
                        raise MapError(f"map {mname!r} slot {idx}: {what!r} was not loaded")
                    coll.maps[mname][idx] = source[what]
        except BaseException:
            for pin in new_pins:      # like the kernel loader: pins this load made go too
                self.pins.pop(pin, None)
            raise
        return coll

    def unpin(self, path: str) -> None:
        """Forget pins at ``path`` or under it (``rm -r`` on the emulated bpffs)."""
        prefix = path.rstrip("/") + "/"
        for pin in [p for p in self.pins if p == path or p.startswith(prefix)]:
            del self.pins[pin]

    def __repr__(self) -> str:
        return f"<EmuBackend pins={len(self.pins)}>"


__all__ = ["EmuBackend", "EmuCollection"]
