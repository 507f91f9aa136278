"""Debug info metadata: what makes LLVM's BPF backend emit BTF and ``.BTF.ext`` line info.

Line info is how a verifier rejection finds its way back to a Python line; BTF describes
the ``.maps`` definitions (``__uint(type, N)`` is encoded as ``int (*type)[N]``, exactly
as libbpf's macros do) and the ``.rodata`` configuration variables.
"""

from __future__ import annotations

import os
from typing import Any

import llvmlite.ir as ir

_I32 = ir.IntType(32)


class _DistinctDI(ir.DIValue):
    """A ``distinct`` node compared by identity (it sits on a metadata cycle)."""

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class DebugInfo:
    """Builds the DI metadata of one module."""

    def __init__(self, module: ir.Module, filename: str) -> None:
        self.m = module
        path = os.path.abspath(filename) if not filename.startswith("<") else filename
        self.file = module.add_debug_info("DIFile", {
            "filename": os.path.basename(path), "directory": os.path.dirname(path) or "."})
        self.int = self.basic("int", 32, True)
        self._types: dict[int, tuple[Any, Any]] = {}
        self.globals: list[Any] = []
        self._cu: Any = None

    def basic(self, name: str, bits: int, signed: bool) -> Any:
        enc = "DW_ATE_signed" if signed else "DW_ATE_unsigned"
        return self.m.add_debug_info("DIBasicType", {
            "name": name, "size": bits, "encoding": ir.DIToken(enc)})

    @property
    def cu(self) -> Any:
        """The compile unit; created on first use, after every global was declared."""
        if self._cu is None:
            self._cu = self.m.add_debug_info("DICompileUnit", {
                "language": ir.DIToken("DW_LANG_C99"), "file": self.file,
                "producer": "pyxdp.compiler", "runtimeVersion": 0, "isOptimized": True,
                "emissionKind": ir.DIToken("FullDebug"),
                "globals": self.m.add_metadata(self.globals)}, is_distinct=True)
            self.m.add_named_metadata("llvm.dbg.cu", self._cu)
            self.m.add_named_metadata("llvm.module.flags",
                                      [ir.Constant(_I32, 7), "Dwarf Version", ir.Constant(_I32, 5)])
            self.m.add_named_metadata("llvm.module.flags", [
                ir.Constant(_I32, 2), "Debug Info Version", ir.Constant(_I32, 3)])
        return self._cu

    def _uint_member(self, scope_fields: list[Any], name: str, value: int, offset: int) -> Any:
        arr = self.m.add_debug_info("DICompositeType", {
            "tag": ir.DIToken("DW_TAG_array_type"), "baseType": self.int, "size": 32 * value,
            "elements": self.m.add_metadata([self.m.add_debug_info(
                "DISubrange", {"count": value})])})
        ptr = self.m.add_debug_info("DIDerivedType", {
            "tag": ir.DIToken("DW_TAG_pointer_type"), "baseType": arr, "size": 64})
        return self.m.add_debug_info("DIDerivedType", {
            "tag": ir.DIToken("DW_TAG_member"), "name": name, "file": self.file,
            "baseType": ptr, "size": 64, "offset": offset})

    def data_type(self, t: Any) -> Any:
        """The DWARF (so BTF) type of a dialect data type: an integer, a byte or integer
        array, a Struct (``SpinLock`` is ``struct bpf_spin_lock``, as the kernel wants)."""
        from pyxdp.compiler.types import ArrayType, IntType, StructType
        key = id(t)
        got = self._types.get(key)
        if got is not None:
            return got[1]
        if isinstance(t, IntType):
            di = self.basic(t.name, t.bits, t.signed)
        elif isinstance(t, ArrayType):
            di = self.m.add_debug_info("DICompositeType", {
                "tag": ir.DIToken("DW_TAG_array_type"), "baseType": self.data_type(t.elem),
                "size": 8 * t.size, "elements": self.m.add_metadata([self.m.add_debug_info(
                    "DISubrange", {"count": t.n})])})
        elif isinstance(t, StructType):
            members = [self.m.add_debug_info("DIDerivedType", {
                "tag": ir.DIToken("DW_TAG_member"), "name": fname, "file": self.file,
                "baseType": self.data_type(ft), "size": 8 * ft.size, "offset": 8 * off})
                for fname, (off, ft) in t.fields.items()]
            name = "bpf_spin_lock" if t.name == "SpinLock" and t.cls is not None and getattr(
                t.cls, "_spin_lock_", False) else t.name
            di = self.m.add_debug_info("DICompositeType", {
                "tag": ir.DIToken("DW_TAG_structure_type"), "name": name, "file": self.file,
                "size": 8 * t.size, "elements": self.m.add_metadata(members)})
        else:
            raise AssertionError(t)
        self._types[key] = (t, di)          # t kept alive: the key is its id
        return di

    def _typed_member(self, name: str, t: Any, offset: int) -> Any:
        ptr = self.m.add_debug_info("DIDerivedType", {
            "tag": ir.DIToken("DW_TAG_pointer_type"), "baseType": self.data_type(t),
            "size": 64})
        return self.m.add_debug_info("DIDerivedType", {
            "tag": ir.DIToken("DW_TAG_member"), "name": name, "file": self.file,
            "baseType": ptr, "size": 64, "offset": offset})

    def _map_def(self, line: int, fields: list[tuple[str, Any]],
                 inner: list[tuple[str, Any]] | None = None) -> Any:
        members = [self._uint_member([], f, v, 64 * i) if isinstance(v, int) else
                   self._typed_member(f, v, 64 * i) for i, (f, v) in enumerate(fields)]
        if inner is not None:
            ptr = self.m.add_debug_info("DIDerivedType", {
                "tag": ir.DIToken("DW_TAG_pointer_type"), "baseType": self._map_def(line, inner),
                "size": 64})
            arr = self.m.add_debug_info("DICompositeType", {
                "tag": ir.DIToken("DW_TAG_array_type"), "baseType": ptr,
                "elements": self.m.add_metadata([self.m.add_debug_info(
                    "DISubrange", {"count": -1})])})
            members.append(self.m.add_debug_info("DIDerivedType", {
                "tag": ir.DIToken("DW_TAG_member"), "name": "values", "file": self.file,
                "baseType": arr, "offset": 64 * len(fields)}))
        return self.m.add_debug_info("DICompositeType", {
            "tag": ir.DIToken("DW_TAG_structure_type"), "file": self.file, "line": line,
            "size": 64 * len(fields), "elements": self.m.add_metadata(members)})

    def map_global(self, gv: ir.GlobalVariable, name: str, line: int,
                   fields: list[tuple[str, Any]],
                   inner: list[tuple[str, Any]] | None = None) -> None:
        """Attach the BTF map definition ``struct { __uint(f, v)... __type(key, K)...
        __array(values, struct {inner...}) } name`` to ``gv`` (a field whose value is a type
        becomes ``__type``; ``inner`` the fields of a map-in-map's inner template)."""
        self._global(gv, name, line, self._map_def(line, fields, inner))

    def config_global(self, gv: ir.GlobalVariable, name: str, line: int, bits: int,
                      signed: bool) -> None:
        """``volatile const uN name`` in ``.rodata``."""
        base = self.basic(("" if signed else "unsigned ") + f"__int{bits}", bits, signed)
        vol = self.m.add_debug_info("DIDerivedType", {
            "tag": ir.DIToken("DW_TAG_volatile_type"), "baseType": base})
        const = self.m.add_debug_info("DIDerivedType", {
            "tag": ir.DIToken("DW_TAG_const_type"), "baseType": vol})
        self._global(gv, name, line, const)

    def _global(self, gv: ir.GlobalVariable, name: str, line: int, ty: Any) -> None:
        var = self.m.add_debug_info("DIGlobalVariable", {
            "name": name, "scope": self.file, "file": self.file, "line": line, "type": ty,
            "isLocal": False, "isDefinition": True}, is_distinct=True)
        gve = self.m.add_debug_info("DIGlobalVariableExpression", {
            "var": var, "expr": self.m.add_debug_info("DIExpression", {})})
        gv.set_metadata("dbg", gve)
        self.globals.append(gve)

    def subprogram(self, fn: ir.Function, name: str, line: int,
                   params: list[tuple[str, str]] | None = None, ret: str = "int",
                   kind: str = "xdp") -> Any:
        """A DISubprogram for ``fn``: a program (``params`` None: ``int f(struct xdp_md
        *ctx)``) or a subprogram whose parameters are ``(name, kind)`` with kind "ctx",
        "ptr" (void *) or "long", returning ``ret`` ("int" or "long").

        The context struct is complete (its size, no members): the verifier recognises a
        subprogram's ctx argument by the struct's name, and refuses a forward declaration
        ("size cannot be determined")."""
        cname, csize = ("xdp_md", 24) if kind == "xdp" else ("__sk_buff", 192)
        ctx = self.m.add_debug_info("DICompositeType", {
            "tag": ir.DIToken("DW_TAG_structure_type"), "name": cname, "file": self.file,
            "size": csize * 8, "elements": self.m.add_metadata([])})
        kinds = {"ctx": self.m.add_debug_info("DIDerivedType", {
                     "tag": ir.DIToken("DW_TAG_pointer_type"), "baseType": ctx,
                     "size": 64}),
                 "long": self.basic("long", 64, True)}
        if params is None:
            params = [("ctx", "ctx")]
        if any(k == "ptr" for _, k in params):
            kinds["ptr"] = self.m.add_debug_info("DIDerivedType", {
                "tag": ir.DIToken("DW_TAG_pointer_type"), "baseType": None, "size": 64})
        rty = self.int if ret == "int" else kinds["long"]
        sty = self.m.add_debug_info("DISubroutineType", {
            "types": self.m.add_metadata([rty, *(kinds[k] for _, k in params)])})
        sp = self.m.add_debug_info("DISubprogram", {
            "name": name, "scope": self.file, "file": self.file, "line": line, "type": sty,
            "scopeLine": line, "spFlags": ir.DIToken(
                "DISPFlagDefinition | DISPFlagOptimized" + (
                    "" if ret == "int" else " | DISPFlagLocalToUnit")),  # static: BTF
            "unit": self.cu}, is_distinct=True)        # FUNC linkage, checked in call context
        # the kernel wants named parameters in the FUNC_PROTO: BTF takes them from the
        # subprogram's retained argument variables (a metadata cycle, patched in after)
        args = [self.m.add_debug_info("DILocalVariable", {
            "name": pname, "arg": i + 1, "scope": sp, "file": self.file, "line": line,
            "type": kinds[k]}) for i, (pname, k) in enumerate(params)]
        sp.operands = (*sp.operands, ("retainedNodes", self.m.add_metadata(args)))
        sp.__class__ = _DistinctDI     # llvmlite hashes metadata by structure: break the cycle
        fn.set_metadata("dbg", sp)
        return sp

    def location(self, scope: Any, line: int, column: int) -> Any:
        return self.m.add_debug_info("DILocation", {"line": line, "column": column,
                                                    "scope": scope})
