"""Pass 5, code generation: LLVM IR text → optimised IR → BPF ELF object (llvmlite).

The target machine is made once per process: creating it costs more than compiling a
small program.  ``llvm.initialize()`` is deprecated and not needed; the BPF target and its
printer are registered on first use.
"""

from __future__ import annotations

import functools

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
    return mod


def emit_object(mod: llvm.ModuleRef) -> bytes:
    return bytes(target_machine().emit_object(mod))


def emit_assembly(mod: llvm.ModuleRef) -> str:
    return str(target_machine().emit_assembly(mod))
