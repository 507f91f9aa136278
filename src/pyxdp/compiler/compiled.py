"""The public entry points: compile a module or a decorated function, get a CompiledObject.

A :class:`CompiledObject` is what the compiler made: the ELF bytes, the parsed
:class:`~pyxdp.spec.ObjectSpec`, and the codecs of the declared maps.  It does not load
itself: a :class:`~pyxdp.backend.Backend` does, kernel or emulator alike::

    obj = compile_module("examples/count_protocols.py")
    obj.set_config("LIMIT", 10)            # .rodata, before load
    with KernelBackend().load(obj.spec) as coll:     # or EmuBackend()
        maps = obj.typed_maps(coll)         # the maps with struct/int codecs applied
        coll.programs["count"].run_packet(frame)
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyxdp.backend import LoadedCollection
from pyxdp.compiler.codecs import apply_codecs
from pyxdp.compiler.emit import emit_assembly, emit_object, optimise
from pyxdp.compiler.frontend import ModuleInfo, format_tree, parse_module
from pyxdp.compiler.lang import ProgramDecl
from pyxdp.compiler.lower_module import ModuleLower
from pyxdp.compiler.typer import Typer
from pyxdp.compiler.types import CTX
from pyxdp.elf import load_object, set_variable
from pyxdp.errors import CompileError
from pyxdp.maps import MapBase
from pyxdp.spec import ObjectSpec, ProgramSpec

PASSES = ("ast", "typed", "llvm", "opt", "asm")


@dataclass
class CompiledObject:
    """A compiled module: ELF bytes, the parsed spec, the declarations, pass dumps."""

    elf: bytes
    spec: ObjectSpec
    info: ModuleInfo
    dumps: dict[str, str] = field(default_factory=dict)
    compile_seconds: float = 0.0

    def program(self, name: str | None = None) -> ProgramSpec:
        """One program's spec (the only one when ``name`` is omitted)."""
        progs = self.spec.programs
        if name is None:
            if len(progs) != 1:
                raise KeyError(f"the object has {len(progs)} programs: name one of {list(progs)}")
            return next(iter(progs.values()))
        return progs[name]

    def set_config(self, name: str, value: int) -> None:
        """Set a ``Const`` configuration global before loading."""
        if name not in self.info.configs:
            raise KeyError(f"no configuration constant {name!r} (have {list(self.info.configs)})")
        set_variable(self.spec, name, value)

    def typed_maps(self, coll: LoadedCollection) -> dict[str, MapBase]:
        """The declared maps of a loaded collection (either backend), with key/value codecs
        from the declared structs and ints (modified in place and returned by name)."""
        out = {}
        for name, decl in self.info.maps.items():
            if name in coll.maps:
                out[name] = apply_codecs(coll.maps[name], decl)
        return out


def _type_programs(info: ModuleInfo, only: list[str] | None) -> dict[str, Any]:
    typed = {}
    for name, decl in info.programs.items():
        if only is not None and name not in only:
            continue
        fn = info.functions[name]
        if len(fn.args.args) != 1:
            raise info.error(fn, f"a program takes exactly one argument (the context), not"
                             f" {len(fn.args.args)}", f"def {name}(ctx): ...")
        typed[name] = (decl, Typer(info, fn, [(fn.args.args[0].arg, CTX)],
                                   kind=decl.kind).run())
    if not typed:
        raise CompileError("no @xdp or @tc programs found", info.filename,
                           hint="decorate a function with @xdp")
    return typed


def _format_typed(typed: dict[str, Any]) -> str:
    out = []
    for name, (_decl, ft) in typed.items():
        out.append(f"# {name}: locals " + ", ".join(f"{k}: {v}" for k, v in ft.locals.items()))
        for node in ast.walk(ft.fn):
            t = ft.types.get(id(node))
            if t is not None and isinstance(node, ast.expr):
                out.append(f"  {node.lineno}:{node.col_offset + 1} {ast.unparse(node)} : {t}")
    return "\n".join(out)


def compile_info(info: ModuleInfo, only: list[str] | None = None,
                 dump: set[str] | None = None) -> CompiledObject:
    start = time.perf_counter()
    dumps: dict[str, str] = {}
    want = dump or set()
    if "ast" in want:
        dumps["ast"] = format_tree(info)
    typed = _type_programs(info, only)
    if "typed" in want:
        dumps["typed"] = _format_typed(typed)
    ml = ModuleLower(info)
    ml.declare_globals()
    for name, (decl, ft) in typed.items():
        ml.program(name, ft, decl.kind, decl.section)
    text = str(ml.m)
    if "llvm" in want:
        dumps["llvm"] = text
    mod = optimise(text, info.filename)
    if "opt" in want:
        dumps["opt"] = str(mod)
    if "asm" in want:
        dumps["asm"] = emit_assembly(mod)
    elf = emit_object(mod)
    spec = load_object(elf)
    for prog in spec.programs.values():
        check_stack(prog, info)
    return CompiledObject(elf, spec, info, dumps, time.perf_counter() - start)


STACK_LIMIT = 512


def check_stack(prog: Any, info: Any) -> None:
    """Refuse a function whose frame is over BPF's 512 bytes (LLVM would have aborted
    the process; the verifier would refuse it at load): the deepest ``r10``-relative
    access, or address taken as ``rX = r10; rX += off``, of each function."""
    from pyxdp.isa import Class, Mode

    insns = prog.instructions
    slots, n = [], 0
    for ins in insns:                        # LD_IMM64 takes two instruction slots
        slots.append(n)
        n += 2 if ins.opcode == 0x18 else 1
    index = {s: i for i, s in enumerate(slots)}
    starts = sorted({0} | {index.get(slots[i] + 1 + ins.imm, 0) for i, ins in
                           enumerate(insns) if ins.opcode == 0x85 and ins.src == 1})
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(insns)
        depth = 0
        fp: dict[int, int] = {}
        for ins in insns[start:end]:
            cls = ins.opcode & 0x07
            if cls in (Class.LDX, Class.STX, Class.ST) and ins.opcode & 0xE0 == Mode.MEM:
                base = ins.src if cls == Class.LDX else ins.dst
                if base == 10:
                    depth = max(depth, -ins.off)
                elif base in fp:
                    depth = max(depth, -(fp[base] + ins.off))
            if cls in (Class.ALU64, Class.ALU) and ins.dst != 10:
                op = ins.opcode & 0xF0
                if cls == Class.ALU64 and op == 0xB0 and ins.opcode & 0x08 and ins.src == 10:
                    fp[ins.dst] = 0                       # rX = r10
                elif cls == Class.ALU64 and op == 0x00 and not ins.opcode & 0x08 and (
                        ins.dst in fp):
                    fp[ins.dst] += ins.imm                # rX += imm
                    depth = max(depth, -fp[ins.dst])
                else:
                    fp.pop(ins.dst, None)
            elif cls == Class.LDX:
                fp.pop(ins.dst, None)
        if depth > STACK_LIMIT:
            line = None
            li = prog.source_line(start)
            if li is not None:
                line = li.line
            what = "the program" if start == 0 else "a subprogram"
            raise CompileError(f"{what} of {prog.name!r} needs {depth} bytes of stack; BPF"
                               f" allows {STACK_LIMIT}", info.filename, line, None,
                               "keep big structs in a per-CPU array map (PerCpuArray) and"
                               " look them up")


def compile_module(path_or_source: str | os.PathLike[str], *, programs: list[str] | None = None,
                   dump: set[str] | None = None) -> CompiledObject:
    """Compile a program module (a path to a ``.py`` file, or its source text)."""
    return compile_info(parse_module(path_or_source), programs, dump)


def compile_function(fn: ProgramDecl | Callable[..., Any], *,
                     dump: set[str] | None = None) -> CompiledObject:
    """Compile one ``@xdp``/``@tc`` function of an imported module (with the maps,
    structs and helpers of its module)."""
    pyfn: Callable[..., Any] = fn.fn if isinstance(fn, ProgramDecl) else fn
    mod = sys.modules.get(pyfn.__module__)
    if mod is None:
        raise CompileError(f"cannot find the module of {pyfn.__name__}")
    try:
        source = inspect.getsource(mod)
        filename = inspect.getsourcefile(mod) or "<source>"
    except (OSError, TypeError) as e:
        raise CompileError(f"no source for module {mod.__name__}: {e}") from None
    info = parse_module(source, env=vars(mod))
    info.filename = filename
    if pyfn.__name__ not in info.programs:
        raise CompileError(f"{pyfn.__name__} is not decorated with @xdp or @tc", filename)
    return compile_info(info, [pyfn.__name__], dump)
