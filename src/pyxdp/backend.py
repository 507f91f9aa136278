"""One seam between a spec and whatever runs it: the kernel, or the emulator.

Everything that creates maps, loads an object or runs a packet goes through a
:class:`Backend`; only specs (:class:`~pyxdp.spec.ObjectSpec`, :class:`~pyxdp.maps.MapSpec`)
cross it, and what comes back has one shape whichever side made it::

    from pyxdp.kernel import KernelBackend      # needs root / CAP_BPF
    from pyxdp.emu import EmuBackend            # pure Python, anywhere

    for backend in (KernelBackend(), EmuBackend()):
        with backend.load(spec) as coll:        # a LoadedCollection
            coll.maps["counters"][0] = 0        # the shared map protocol (pyxdp.maps)
            res = coll.programs["xdp_main"].run_packet(frame)
            res.verdict, res.packet             # XdpAction.PASS, the bytes after the run
            coll.variables["limit"].value       # global data, read and written alike

The contract (tested by one suite against both backends, ``tests/*/test_backend_contract``):

* ``load`` creates every map of the spec (initial contents of ``.data``/``.rodata``
  included), loads every program, fills the initial slots of prog arrays, and on any
  failure releases everything it made.  Maps declared ``pinning = LIBBPF_PIN_BY_NAME`` are
  looked up under ``pin_path`` first and reused (same layout required), otherwise created
  and pinned there: two loads with one ``pin_path`` share those maps.  The emulator's pins
  live in the :class:`~pyxdp.emu.EmuBackend` instance.
* ``run_packet`` runs a program once on one frame, from a fresh frame buffer, and returns a
  :class:`RunResult`: the return value, the frame as the program left it, and (kernel only)
  the run time the kernel measured.
* Maps follow :class:`~pyxdp.maps.MapBase` (``m[k]``, ``KeyError``, ``items()``, batch
  operations), including :meth:`~pyxdp.maps.MapBase.update_batch_raw`.

This module is pure: it defines the protocol and the shared value types, never a syscall.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from pyxdp.abi import ProgType, XdpAction
from pyxdp.errors import MapError
from pyxdp.maps import MapBase, MapSpec
from pyxdp.spec import ObjectSpec, VariableSpec

_VERDICTS = {int(v): v for v in XdpAction}


@dataclass(frozen=True)
class RunResult:
    """What one run of a program on one frame gave."""

    retval: int                    # r0 as the program returned it (32 bits in the kernel)
    packet: bytes                  # the frame after the run (after adjust_head/tail too)
    duration_ns: int | None = None  # the kernel's measurement; None in the emulator
    prog_type: ProgType = ProgType.XDP

    @property
    def verdict(self) -> XdpAction | int:
        """An XDP program's return value as its :class:`XdpAction`; for other program
        types (a tc program's ``TC_ACT_*``) the bare int, never misread as XDP."""
        if self.prog_type != ProgType.XDP:
            return self.retval
        return _VERDICTS.get(self.retval & 0xFFFFFFFF, self.retval)


@runtime_checkable
class LoadedProgram(Protocol):
    """A program loaded by a backend."""

    @property
    def name(self) -> str: ...

    def run_packet(self, packet: bytes, *, ingress_ifindex: int | None = None,
                   rx_queue_index: int = 0) -> RunResult:
        """Run once on ``packet``.  ``ingress_ifindex`` (and ``rx_queue_index``) set the
        context's receive device; None leaves the backend's default (the kernel's test
        run then reports the loopback device, ifindex 1, as does the emulator)."""
        ...


class Variable:
    """A global variable (``.data``, ``.rodata``, ``.bss``) of a loaded object, read and
    written through its data map, on either backend."""

    def __init__(self, spec: VariableSpec, m: MapBase) -> None:
        self.spec = spec
        self.map = m

    @property
    def raw(self) -> bytes:
        data = self.map._lookup(bytes(4))
        if data is None:
            raise MapError(f"data map {self.map.name!r} has no value 0")
        return data[self.spec.offset:self.spec.offset + self.spec.size]

    @raw.setter
    def raw(self, value: bytes) -> None:
        if self.spec.readonly:
            raise MapError(f"variable {self.spec.name!r} is in frozen {self.spec.map_name};"
                           " set it on the ObjectSpec before loading (set_variable)")
        if len(value) != self.spec.size:
            raise ValueError(f"variable {self.spec.name!r} is {self.spec.size} bytes,"
                             f" got {len(value)}")
        self.map.write_value_bytes(bytes(4), self.spec.offset, bytes(value))

    @property
    def value(self) -> int | bytes:
        """An unsigned little-endian int for 1/2/4/8-byte variables, else bytes."""
        raw = self.raw
        return int.from_bytes(raw, "little") if len(raw) in (1, 2, 4, 8) else raw

    @value.setter
    def value(self, value: int | bytes) -> None:
        if isinstance(value, int):
            value = value.to_bytes(self.spec.size, "little", signed=value < 0)
        self.raw = value

    def __repr__(self) -> str:
        return f"<Variable {self.spec.name!r} in {self.spec.map_name} = {self.value!r}>"


@runtime_checkable
class LoadedCollection(Protocol):
    """The maps, programs and variables of one loaded object; closing it releases them
    (pinned maps stay, in the kernel and in the emulator backend that holds the pins)."""

    @property
    def programs(self) -> Mapping[str, LoadedProgram]: ...

    @property
    def maps(self) -> Mapping[str, MapBase]: ...

    @property
    def variables(self) -> Mapping[str, Variable]: ...

    def close(self) -> None: ...

    def __enter__(self) -> LoadedCollection: ...

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def __iter__(self) -> Iterator[str]: ...


@runtime_checkable
class Backend(Protocol):
    """Creates maps and loads objects: :class:`~pyxdp.kernel.KernelBackend` or
    :class:`~pyxdp.emu.EmuBackend`."""

    @property
    def name(self) -> str:
        """``"kernel"`` or ``"emulator"``."""
        ...

    def create_map(self, spec: MapSpec) -> MapBase:
        """One map on its own (closed by the caller)."""
        ...

    def load(self, obj: ObjectSpec, *, pin_path: str | None = None,
             maps: Mapping[str, Any] | None = None) -> LoadedCollection:
        """Every map and program of ``obj`` (see the module docstring for the contract);
        ``maps`` are existing maps of this backend to use for those names (same layout),
        which the collection does not own."""
        ...


__all__ = ["Backend", "LoadedCollection", "LoadedProgram", "RunResult", "Variable"]
