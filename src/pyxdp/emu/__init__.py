"""A userspace eBPF machine with the kernel's semantics, for testing XDP programs fast.

    prog = pyxdp.emu.load(spec, maps=obj)        # translate once
    prog.run_xdp(packet).verdict                 # XdpAction.PASS ...
    prog.run(mem)                                # conformance contract: raw r0
    EmuBackend().load(obj_spec)                  # the backend protocol (pyxdp.backend)

Programs are translated to Python functions (see :mod:`pyxdp.emu.translate`), every memory
access is bounds-checked against its region, and faults raise ``EmulatorError`` with the pc.
"""

from pyxdp.emu.backend import EmuBackend, EmuCollection
from pyxdp.emu.fib import Fib, FibResult, Route
from pyxdp.emu.interp import interpret
from pyxdp.emu.machine import DEFAULT_BUDGET, Machine
from pyxdp.emu.maps import (
    ArrayMap,
    EmuMap,
    EmuMapError,
    HashMap,
    LpmTrie,
    MapOfMaps,
    ProgArray,
    RingBuf,
    SlotMap,
    create_map,
)
from pyxdp.emu.program import EmuProgram, load, run_packets
from pyxdp.emu.xdp import Redirect, XdpResult

Vm = Machine

__all__ = [
    "DEFAULT_BUDGET", "ArrayMap", "EmuBackend", "EmuCollection", "EmuMap", "EmuMapError",
    "EmuProgram", "Fib", "FibResult",
    "HashMap", "LpmTrie", "Machine", "MapOfMaps", "ProgArray", "Redirect", "RingBuf", "Route",
    "SlotMap",
    "Vm", "XdpResult", "create_map", "interpret", "load", "run_packets",
]
