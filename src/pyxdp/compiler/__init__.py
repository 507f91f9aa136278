"""Write XDP programs in Python: a compiler from a restricted Python dialect to BPF.

See :mod:`pyxdp.compiler.lang` for what a program module imports and
``pyxdp/compiler/README.md`` for the language (types, packet access, maps, helpers) and
the table of unsupported constructs.  Passes: front end (``ast``) → dialect check →
typing (``typed``) → lowering to LLVM IR with debug info (``llvm``, ``opt``) → BPF object
(``asm``) → :func:`pyxdp.elf.load_object`.
"""

from pyxdp.compiler.check import UNSUPPORTED
from pyxdp.compiler.codecs import StructCodec, apply_codecs
from pyxdp.compiler.compiled import PASSES, CompiledObject, compile_function, compile_module

__all__ = ["PASSES", "UNSUPPORTED", "CompiledObject", "StructCodec", "apply_codecs",
           "compile_function", "compile_module"]
