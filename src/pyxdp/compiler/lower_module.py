"""Module lowering: maps (BTF-defined ``.maps``), ``.rodata`` configuration, license and
one LLVM function per program."""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir

from pyxdp.abi import MapType
from pyxdp.compiler.debuginfo import DebugInfo
from pyxdp.compiler.frontend import ModuleInfo
from pyxdp.compiler.lower_fn import I32, I64, PTR, FnLower
from pyxdp.compiler.typer import FnTypes

DATA_LAYOUT = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"
TRIPLE = "bpfel-unknown-none"


# maps whose BTF key/value types the kernel accepts (and needs, for a bpf_spin_lock in the
# value); the others (prog arrays, devmaps, ring buffers...) refuse BTF key/value types
_TYPED = {MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
          MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.LPM_TRIE}


def _map_fields(decl: Any) -> list[tuple[str, Any]]:
    """The ``__uint``/``__type`` fields of a map's BTF definition."""
    fields: list[tuple[str, Any]] = [("type", int(decl.map_type))]
    if decl.map_type in _TYPED:             # __type(key, K), __type(value, V): typed BTF
        fields += [("key", decl.key_type()), ("value", decl.value_type())]
    elif decl.inner is not None:            # the value is the inner map's fd / id
        fields += [("key", decl.key_type())]
    elif decl.map_type != MapType.RINGBUF:
        fields += [("key_size", decl.key_type().size),
                   ("value_size", decl.value_type().size)]
    fields.append(("max_entries", decl.max_entries))
    if decl.flags:
        fields.append(("map_flags", decl.flags))
    if decl.pinning:
        fields.append(("pinning", decl.pinning))
    return fields


class _VolatileLoad(ir.LoadInstr):
    """``load volatile``: configuration reads must not be folded to the default value."""

    def descr(self, buf: list[str]) -> None:
        super().descr(buf)
        buf[-1] = buf[-1].replace("load ", "load volatile ", 1)


class ModuleLower:
    def __init__(self, info: ModuleInfo) -> None:
        self.info = info
        self.m = ir.Module(name=info.filename)
        self.m.triple = TRIPLE
        self.m.data_layout = DATA_LAYOUT
        self.di = DebugInfo(self.m, info.filename)
        self.maps: dict[str, ir.GlobalVariable] = {}
        self.configs: dict[str, ir.GlobalVariable] = {}
        self.subprogs: dict[tuple[object, ...], ir.Function] = {}

    def _line(self, name: str) -> int:
        for node in self.info.tree.body:
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            for t in targets:
                if getattr(t, "id", None) == name:
                    return node.lineno
        return 1

    def declare_globals(self) -> None:
        for name, decl in self.info.maps.items():
            fields = _map_fields(decl)
            types: list[ir.Type] = [PTR] * len(fields)
            if decl.inner is not None:          # __array(values, struct {inner def})
                types.append(ir.ArrayType(PTR, 0))
            ty = ir.LiteralStructType(types)
            gv = ir.GlobalVariable(self.m, ty, name)
            gv.initializer = ir.Constant(ty, None)
            gv.section = ".maps"
            gv.align = 8
            inner = None if decl.inner is None else _map_fields(decl.inner)
            self.di.map_global(gv, name, self._line(name), fields, inner)
            self.maps[name] = gv
        for name, const in self.info.configs.items():
            t = const.type.host
            ity = ir.IntType(t.bits)
            gv = ir.GlobalVariable(self.m, ity, name)
            gv.initializer = ir.Constant(ity, t.wrap(const.default) & ((1 << t.bits) - 1))
            gv.global_constant = True
            gv.section = ".rodata"
            gv.align = t.size
            self.di.config_global(gv, name, self._line(name), t.bits, t.signed)
            self.configs[name] = gv
        lic_ty = ir.ArrayType(ir.IntType(8), 4)
        lic = ir.GlobalVariable(self.m, lic_ty, "_license")
        lic.initializer = ir.Constant(lic_ty, bytearray(b"GPL\0"))
        lic.global_constant = True
        lic.section = "license"

    def assume(self) -> ir.Function:
        fn = self.m.globals.get("llvm.assume")
        if fn is None:
            fn = ir.Function(self.m, ir.FunctionType(ir.VoidType(), [ir.IntType(1)]),
                             "llvm.assume")
        return fn

    def map_ptr(self, decl: Any) -> ir.Value:
        return self.maps[decl.name]

    def load_config(self, b: ir.IRBuilder, name: str) -> ir.Value:
        gv = self.configs[name]
        instr = _VolatileLoad(b.block, gv, typ=gv.value_type)
        instr.align = gv.align
        b._insert(instr)
        return instr

    def subprog(self, key: tuple[object, ...], typed: FnTypes, kind: str) -> ir.Function:
        """The ``.text`` function of an ``@subprog`` for one argument signature (made on
        first use): ``long f(ctx, args...)``, static and never inlined."""
        fn = self.subprogs.get(key)
        if fn is not None:
            return fn
        from pyxdp.compiler.lower_fn import SubprogLower, abi_kind
        name = typed.fn.name
        n = sum(1 for k in self.subprogs if k[1] == name)
        fname = name if n == 0 else f"{name}__{n + 1}"
        params = [("ctx", "ctx")] + [(p, abi_kind(t)) for p, t in typed.params
                                     if abi_kind(t) != "ctx"]
        fn = ir.Function(self.m, ir.FunctionType(I64, [
            PTR if k in ("ctx", "ptr") else I64 for _, k in params]), fname)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.section = ".text"
        for arg, (pname, _) in zip(fn.args, params):
            arg.name = pname
        self.subprogs[key] = fn
        scope = self.di.subprogram(fn, fname, typed.fn.lineno, params, ret="long",
                                   kind=kind)
        SubprogLower(self, fn, typed, kind, scope).run()
        return fn

    def program(self, name: str, typed: FnTypes, kind: str, section: str) -> None:
        fn = ir.Function(self.m, ir.FunctionType(I32, [PTR]), name)
        fn.section = section
        fn.args[0].name = "ctx"
        scope = self.di.subprogram(fn, name, typed.fn.lineno, kind=kind)
        FnLower(self, fn, typed, kind, scope).run()
