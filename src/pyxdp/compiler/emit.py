"""Pass 5, code generation: LLVM IR text → optimised IR → BPF ELF object (llvmlite).

The target machine is made once per process: creating it costs more than compiling a
small program.  ``llvm.initialize()`` is deprecated and not needed; the BPF target and its
printer are registered on first use.
"""

from __future__ import annotations

import functools
import re

import llvmlite.binding as llvm

from pyxdp.errors import CompileError


@functools.cache
def target_machine() -> llvm.TargetMachine:
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    # DSE would trim the front of a struct's zeroing memset where fields are stored, and
    # the trimmed memset keeps only the alignment of its new start (a 62-byte memset at
    # align 2 becomes 31 two-byte stores where 8 eight-byte ones do): keep memsets whole
    llvm.set_option("", "-enable-dse-partial-overwrite-tracking=false")
    # a loop's exit value in closed form (sum of 0..n-1 = n*(n-1)/2) is computed in 65
    # bits, which the BPF backend can only lower to a libcall (__multi3) and then aborts
    # the whole process: keep the loop's own value
    llvm.set_option("", "-replexitval=never")
    # the BPF backend's own stack check ends the process (an LLVM error, not an
    # exception): let it through and check the frames of the object ourselves
    # (pyxdp.compiler.compiled.check_stack), which raises a CompileError instead
    llvm.set_option("", "-bpf-stack-size=1048576")
    return llvm.Target.from_triple("bpfel-unknown-none").create_target_machine(
        cpu="v3", opt=2)


def optimise(ir_text: str, filename: str) -> llvm.ModuleRef:
    """Parse, verify and run the -O2 pipeline (which includes LLVM's BPF IR passes)."""
    try:
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
    except RuntimeError as e:   # our own bug: the IR we generated is malformed
        raise CompileError(f"internal error: generated invalid LLVM IR: {e}", filename) from e
    tm = target_machine()
    pto = llvm.create_pipeline_tuning_options(speed_level=2)
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    _check_widths(str(mod), filename)
    return mod


# multiply/divide wider than 64 bits: the backend can only make a libcall of them (wide
# loads, stores, adds and shifts of byte arrays carried as integers are split inline)
_WIDE = re.compile(r"= (?:mul|udiv|sdiv|urem|srem)(?: nuw| nsw| exact)*"
                   r" i(6[5-9]|[7-9]\d|[1-9]\d{2,})\b")


def _check_widths(ir_text: str, filename: str) -> None:
    """The BPF backend aborts the process (not an exception) on a multiply or divide
    wider than 64 bits; refuse such IR here, naming the source line, instead."""
    for line in ir_text.splitlines():
        if line.startswith(("target ", ";", "!")) or not _WIDE.search(line):
            continue
        m = re.search(r"!dbg !(\d+)", line)
        where = None
        if m:
            loc = re.search(rf"^!{m.group(1)} = !DILocation\(line: (\d+)", ir_text, re.M)
            where = int(loc.group(1)) if loc else None
        raise CompileError("this computes with integers wider than 64 bits, which BPF"
                           " cannot (internal: the optimiser widened an expression)",
                           filename, where, None, "split the arithmetic into u64 steps")


def emit_object(mod: llvm.ModuleRef) -> bytes:
    return bytes(target_machine().emit_object(mod))


def emit_assembly(mod: llvm.ModuleRef) -> str:
    return str(target_machine().emit_assembly(mod))
