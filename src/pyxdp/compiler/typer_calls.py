"""Typing of calls: casts, struct constructors, helpers, ctx/cursor/map methods, inlining."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

from pyxdp.abi import MapType
from pyxdp.compiler.lang import BUILTINS, ip4
from pyxdp.compiler.structs import Struct
from pyxdp.compiler.types import (
    BOOL,
    CTX,
    CURSOR,
    NONE,
    RAWPTR,
    VOID,
    ArrayType,
    IntType,
    LitType,
    MapHandleType,
    MapRefType,
    RefType,
    StructType,
    Type,
    common,
    fits,
    i64,
    is_int,
    promote,
    u16,
    u32,
    u64,
)

if TYPE_CHECKING:
    from pyxdp.compiler.typer import Typer

_REDIRECT_MAPS = (MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.CPUMAP, MapType.XSKMAP)
_SIMPLE = {"ktime_get_ns": ((), u64), "ktime_get_coarse_ns": ((), u64),
           "get_prandom_u32": ((), u32),
           "get_smp_processor_id": ((), u32), "bswap16": (("int",), u16),
           "bswap32": (("int",), u32), "bswap64": (("int",), u64),
           "csum_fold": (("int",), u16), "csum_replace2": (("int", "int", "int"), u16),
           "csum_replace4": (("int", "int", "int"), u16), "redirect": (("int", "int?"), i64)}


class CallTyper:
    """The call half of :class:`~pyxdp.compiler.typer.Typer`."""

    def __init__(self, typer: Typer) -> None:
        self.t = typer

    def err(self, node: ast.AST, msg: str, hint: str | None = None) -> Exception:
        return self.t.err(node, msg, hint)

    def res(self, node: ast.AST, r: Any) -> None:
        self.t.out.res[id(node)] = r

    def args(self, e: ast.Call, n_min: int, n_max: int, what: str) -> list[ast.expr]:
        args = list(e.args)
        for k in e.keywords:
            args.append(k.value)   # keywords fill trailing optional positions
        if not n_min <= len(args) <= n_max:
            want = n_min if n_min == n_max else f"{n_min}..{n_max}"
            raise self.err(e, f"{what} takes {want} arguments, got {len(args)}")
        return args

    def int_arg(self, a: ast.expr) -> Type:
        t = self.t.expr(a)
        if not is_int(t) and t is not BOOL:
            raise self.err(a, f"expected an integer, got {t}")
        return t

    def ref_arg(self, a: ast.expr, target: Type | None = None, spaces: str = "pkt map stack"
                ) -> RefType:
        t = self.t.expr(a)
        if not isinstance(t, RefType) or t.space not in spaces.split():
            raise self.err(a, f"expected a reference to a {target or 'struct'}, got {t}")
        if isinstance(a, ast.Name) and t.space != "stack" and a.id not in self.t.flow.nonnull:
            raise self.err(a, f"{a.id!r} may be None here", f"check it first: if not {a.id}: ...")
        if target is not None and t.target != target:
            raise self.err(a, f"expected a {target}, got {t.target}")
        return t

    def data_type(self, a: ast.expr) -> Type:
        """The type of data in memory (packet loads/stores): ``be32`` stays ``be32``, so
        what is read is swapped to host order exactly as a ``be32`` header field is."""
        t = self.t.type_expr(a, storage=True)
        return t.target if isinstance(t, RefType) else t

    # -- dispatch -----------------------------------------------------------------------
    def call(self, e: ast.Call) -> Type:
        f = e.func
        if isinstance(f, ast.Attribute):
            base = self.t.expr(f.value)
            if base is CTX:
                return self.ctx_method(e, f.attr)
            if base is CURSOR:
                if not isinstance(f.value, ast.Name):
                    raise self.err(e, "call cursor methods on a cursor variable",
                                   "c = ctx.cursor(); eth = c.parse(Ethernet)")
                return self.cursor_method(e, f.attr, f.value.id)
            if isinstance(base, MapRefType):
                return self.map_method(e, f.attr, base.decl)
            if isinstance(base, RefType) and isinstance(base.target, MapHandleType):
                v = f.value
                if isinstance(v, ast.Name) and v.id not in self.t.flow.nonnull:
                    raise self.err(e, f"{v.id!r} may be None here (the slot may be empty)",
                                   f"check it first: if not {v.id}: return ...")
                t = self.map_method(e, f.attr, base.target.decl)
                self.res(e, ("map", base.target.decl, f.attr, "inner"))
                return t
            raise self.err(e, f"{ast.unparse(f)} is not a callable method of a {base}")
        if not isinstance(f, ast.Name):
            raise self.err(e, "only names and methods can be called")
        name = f.id
        if name in self.t.out.locals:
            raise self.err(e, f"{name!r} is a local variable, not a function")
        val = self.t.info.env.get(name)
        if isinstance(val, IntType | ArrayType):
            return self.cast(e, val)
        if isinstance(val, type) and issubclass(val, Struct):
            return self.struct_new(e, val.__pyxdp_type__)
        if name in BUILTINS and getattr(val, "__module__", "") in (
                "pyxdp.compiler.lang",):
            return self.builtin(e, name)
        if name in self.t.info.subprogs:
            return self.subprog(e, name)
        if name in self.t.info.functions and callable(val):
            return self.inline(e, name)
        if name in ("min", "max", "abs") and val is None:   # Python's, not shadowed
            return self.minmax(e, name)
        if name == "range":
            raise self.err(e, "range() only drives for loops")
        hint = "use trace_printk(\"fmt\", x)" if name == "print" else (
            "call map methods, helpers (ktime_get_ns, redirect...) or module functions")
        raise self.err(e, f"call to unknown function {name!r}", hint)

    def minmax(self, e: ast.Call, name: str) -> Type:
        """``min(a, b, ...)``, ``max(...)``, ``abs(x)`` on integers, as Python means them:
        operands of one signedness (a mix would compare with C's conversions, not Python's
        order, so it is refused), constants folded."""
        lo = 1 if name == "abs" else 2
        args = self.args(e, lo, 1 if name == "abs" else 8, name)
        types = [self.int_arg(a) for a in args]
        lits = [t for t in types if isinstance(t, LitType)]
        if len(lits) == len(types):
            values = [t.value for t in lits]
            folded = abs(values[0]) if name == "abs" else (
                min(values) if name == "min" else max(values))
            return LitType(folded)
        ints = [t.host if isinstance(t, IntType) else t for t in types if t is not BOOL]
        typed = [t for t in ints if isinstance(t, IntType)]
        if len({t.signed for t in typed}) > 1:
            raise self.err(e, f"{name}() of {' and '.join(t.name for t in typed)} mixes signed"
                           " and unsigned integers", "cast them to one type first")
        t = typed[0]
        for other in typed[1:]:
            t = common(t, other)
        t = promote(t)
        for a, at in zip(args, types):
            if isinstance(at, LitType) and not fits(at.value, t):
                raise self.err(a, f"{at.value} does not fit {t.name}")
            if isinstance(at, LitType) and at.value < 0 and not t.signed:
                raise self.err(a, f"{name}() of unsigned {t.name} and negative {at.value}",
                               "cast to a signed type first")
        self.res(e, ("minmax", name, t))
        return t

    def cast(self, e: ast.Call, t: IntType | ArrayType) -> Type:
        if not isinstance(t, IntType) or len(e.args) != 1 or e.keywords:
            raise self.err(e, f"{ast.unparse(e.func)}(x) casts exactly one integer")
        at = self.int_arg(e.args[0])
        self.res(e, ("cast", t.host))
        if isinstance(at, LitType):
            return t.host
        return t.host

    def struct_new(self, e: ast.Call, st: StructType) -> Type:
        if e.args:
            raise self.err(e, f"{st.name}(...) takes keyword arguments only",
                           f"{st.name}(field=value)")
        for k in e.keywords:
            if k.arg not in st.fields:
                raise self.err(k.value, f"{st.name} has no field {k.arg!r}")
            ft = st.fields[k.arg][1]
            self.t.check_assignable(self.t.expr(k.value), ft.host if isinstance(
                ft, IntType) else ft, k.value)
        self.res(e, ("struct_new", st))
        return RefType(st, "stack")

    # -- builtins -----------------------------------------------------------------------
    def builtin(self, e: ast.Call, name: str) -> Type:
        if name in _SIMPLE:
            spec, ret = _SIMPLE[name]
            args = self.args(e, sum(1 for s in spec if not s.endswith("?")), len(spec), name)
            for a in args:
                self.int_arg(a)
            self.res(e, ("builtin", name))
            return ret
        if name == "ip4":
            if len(e.args) != 1 or not isinstance(e.args[0], ast.Constant):
                raise self.err(e, "ip4 takes one 'a.b.c.d' string literal")
            text = e.args[0].value
            try:
                if not isinstance(text, str):
                    raise ValueError(text)
                return LitType(ip4(text))
            except ValueError:
                raise self.err(e, f"bad IPv4 address {text!r}") from None
        self.res(e, ("builtin", name))
        return getattr(self, "b_" + name)(e)

    def b_trace_printk(self, e: ast.Call) -> Type:
        if len(e.args) > 4:
            raise self.err(e, "trace_printk takes a format and at most 3 values")
        for a in e.args[1:]:
            self.int_arg(a)
        return i64

    def b_load(self, e: ast.Call) -> Type:
        t, p = self.args(e, 2, 2, "load")
        tt = self.data_type(t)
        if self.t.expr(p) is not RAWPTR or not isinstance(tt, IntType):
            raise self.err(e, "load(T, p) reads an integer at a raw packet pointer",
                           "load(u32, ctx.data + 14)")
        self.res(e, ("builtin", "load", tt))
        return tt.host

    def b_store(self, e: ast.Call) -> Type:
        t, p, v = self.args(e, 3, 3, "store")
        tt = self.data_type(t)
        if self.t.expr(p) is not RAWPTR or not isinstance(tt, IntType):
            raise self.err(e, "store(T, p, v) writes an integer at a raw packet pointer")
        self.int_arg(v)
        self.res(e, ("builtin", "store", tt))
        return VOID

    def b_atomic_add(self, e: ast.Call) -> Type:
        target, value = self.args(e, 2, 2, "atomic_add")
        tt = self.t.expr(target)
        r = self.t.out.res.get(id(target), ("",))
        if r[0] not in ("field", "value") or not isinstance(tt, IntType) or tt.bits < 32:
            raise self.err(target, "atomic_add needs a u32/u64 field of a map value",
                           "atomic_add(v.packets, 1)")
        self.int_arg(value)
        return VOID

    def b_ipv4_csum(self, e: ast.Call) -> Type:
        (ip,) = self.args(e, 1, 1, "ipv4_csum")
        ref = self.ref_arg(ip)
        if not isinstance(ref.target, StructType) or (
                ref.target.name != "IPv4" and ref.target.size != 20):
            raise self.err(ip, "ipv4_csum takes an IPv4 header ref (or any 20-byte struct"
                           " laid out like one)", "ipv4_csum(ip) with ip = c.parse(IPv4)")
        self.res(e, ("builtin", "ipv4_csum", ip.id if isinstance(ip, ast.Name) else None))
        return u16

    def b_csum_diff(self, e: ast.Call) -> Type:
        old, new, seed = self.args(e, 3, 3, "csum_diff")
        for a in (old, new):
            t = self.t.expr(a)
            if t is NONE or (isinstance(t, LitType) and t.value == 0):
                continue                   # no old (or new) data: None, or 0 as in C
            self.ref_arg(a)
        self.int_arg(seed)
        return i64

    def b_fib_lookup(self, e: ast.Call) -> Type:
        ctx, params, flags = self.args(e, 3, 3, "fib_lookup")
        if self.t.expr(ctx) is not CTX:
            raise self.err(ctx, "fib_lookup's first argument is the program's ctx")
        p = self.ref_arg(params, spaces="stack")
        if p.target.name != "FibParams":
            raise self.err(params, "fib_lookup takes a FibParams()")
        self.int_arg(flags)
        return i64

    def b_tail_call(self, e: ast.Call) -> Type:
        ctx, m, idx = self.args(e, 3, 3, "tail_call")
        mt = self.t.expr(m)
        if self.t.expr(ctx) is not CTX or not isinstance(mt, MapRefType) or (
                mt.decl.map_type != MapType.PROG_ARRAY):
            raise self.err(e, "tail_call(ctx, prog_array, index)")
        self.int_arg(idx)
        return VOID

    # -- ctx and cursor -----------------------------------------------------------------
    def ctx_method(self, e: ast.Call, name: str) -> Type:
        self.res(e, ("ctx", name))
        if name == "cursor":
            self.args(e, 0, 0, "ctx.cursor")
            return CURSOR
        if name == "load":
            args = list(e.args)
            base = None
            for k in e.keywords:
                if k.arg != "base":
                    raise self.err(k.value, f"ctx.load has no argument {k.arg!r}")
                base = k.value
            if len(args) != 2:
                raise self.err(e, "ctx.load(T, offset, base=header)")
            tt = self.data_type(args[0])
            self.int_arg(args[1])
            if base is not None:
                self.ref_arg(base, spaces="pkt")
            return RefType(tt, "pkt")
        if name == "packet_len":
            self.args(e, 0, 0, "ctx.packet_len")
            return u32
        if name == "buff_len":
            self.args(e, 0, 0, "ctx.buff_len")
            return u64
        if name in ("load_bytes", "store_bytes"):
            off, buf = self.args(e, 2, 2, f"ctx.{name}")
            self.int_arg(off)
            ref = self.ref_arg(buf, spaces="stack map")
            if ref.target.size == 0 or ref.target.size > 0xFFFF:
                raise self.err(buf, f"ctx.{name} copies 1..65535 bytes, not {ref.target.size}")
            if name == "store_bytes":
                self.t.gen += 1         # the frame's bytes changed under any packet ref
            return i64
        if name in ("adjust_head", "adjust_tail", "adjust_meta"):
            (d,) = self.args(e, 1, 1, f"ctx.{name}")
            self.int_arg(d)
            self.t.gen += 1
            self.t.flow.nonnull = {n for n in self.t.flow.nonnull
                                   if not _is_pkt(self.t.out.locals.get(n))}
            return i64
        raise self.err(e, f"ctx has no method {name!r}",
                       "ctx.cursor(), ctx.load(T, off), ctx.packet_len(), ctx.buff_len(),"
                       " ctx.load_bytes(off, buf), ctx.store_bytes(off, buf),"
                       " ctx.adjust_head(n) ...")

    def cursor_method(self, e: ast.Call, name: str, var: str) -> Type:
        self.res(e, ("cursor", name, var))
        if name in ("parse", "header"):
            (h,) = self.args(e, 1, 1, name)
            ht = self.data_type(h)
            if not isinstance(ht, StructType):
                raise self.err(h, "parse takes a header type such as Ethernet or IPv4")
            return RefType(ht, "pkt")
        if name == "skip":
            (n,) = self.args(e, 1, 1, "skip")
            self.int_arg(n)
            return VOID
        if name == "load":
            t, off = self.args(e, 2, 2, "load")
            tt = self.data_type(t)
            self.int_arg(off)
            return RefType(tt, "pkt")
        if name == "offset":
            self.args(e, 0, 0, "offset")
            return u32
        raise self.err(e, f"a cursor has no method {name!r}",
                       "parse(H), header(H), skip(n), load(T, off), offset()")

    # -- maps ---------------------------------------------------------------------------
    def key_or_value(self, a: ast.expr, want: Type, what: str) -> None:
        if isinstance(want, IntType):
            t = self.int_arg(a)
            if isinstance(t, LitType) and not fits(t.value, want):
                raise self.err(a, f"{t.value} does not fit the {what} type {want}")
            return
        self.ref_arg(a, want)

    def map_method(self, e: ast.Call, name: str, decl: Any) -> Type:
        self.res(e, ("map", decl, name))
        mt = decl.map_type
        if mt == MapType.RINGBUF:
            if name != "output":
                raise self.err(e, "a RingBuf only has output(struct_ref, flags=0)")
            args = self.args(e, 1, 2, "output")
            self.ref_arg(args[0])
            for a in args[1:]:
                self.int_arg(a)
            return i64
        if mt == MapType.PERF_EVENT_ARRAY:
            if name != "output":
                raise self.err(e, "a PerfEventArray only has output(ctx, struct_ref, sample=0)")
            args = self.args(e, 2, 3, "output")
            if self.t.expr(args[0]) is not CTX:
                raise self.err(args[0], "output's first argument is the program's ctx",
                               "events.output(ctx, ev, sample=64)")
            self.ref_arg(args[1])
            if len(args) > 2:
                st = self.int_arg(args[2])
                if isinstance(st, LitType) and not 0 <= st.value <= 0xFFFFF:
                    raise self.err(args[2], f"sample={st.value}: at most 0xFFFFF packet bytes")
            return i64
        if name == "redirect":
            if mt not in _REDIRECT_MAPS:
                raise self.err(e, "redirect() works on DevMap, CpuMap and XskMap")
            for a in self.args(e, 1, 2, "redirect"):
                self.int_arg(a)
            return i64
        if name == "tail_call":
            raise self.err(e, "use tail_call(ctx, prog_array, index)")
        kt, vt = decl.key_type(), decl.value_type()
        if decl.inner is not None:
            if name != "lookup":
                raise self.err(e, f"programs only look maps up in a {decl.kind}: the kernel"
                               " lets user space alone store or delete them",
                               f"m = {ast.unparse(e.func.value)}.lookup(k)"  # type: ignore[attr-defined]
                               "; if m: m.lookup(...)")
            (k,) = self.args(e, 1, 1, "lookup")
            self.key_or_value(k, kt, "key")
            return RefType(MapHandleType(decl.inner), "map")
        if name == "lookup":
            (k,) = self.args(e, 1, 1, "lookup")
            self.key_or_value(k, kt, "key")
            return RefType(vt, "map")
        if name == "update":
            args = self.args(e, 2, 3, "update")
            self.key_or_value(args[0], kt, "key")
            self.key_or_value(args[1], vt, "value")
            if len(args) == 3:
                self.int_arg(args[2])
            return i64
        if name == "delete":
            (k,) = self.args(e, 1, 1, "delete")
            self.key_or_value(k, kt, "key")
            return i64
        if name == "add":
            k, n = self.args(e, 2, 2, "add")
            if not isinstance(vt, IntType):
                raise self.err(e, "add(key, n) needs an integer value type",
                               "v = m.lookup(k); if v: v.field += n")
            self.key_or_value(k, kt, "key")
            self.int_arg(n)
            return VOID
        raise self.err(e, f"maps have no method {name!r}",
                       "lookup, update, delete, add, redirect, output")

    # -- helper functions (inlined) -----------------------------------------------------
    def inline(self, e: ast.Call, name: str) -> Type:
        from pyxdp.compiler.typer import Typer
        if name in self.t.stack:
            raise self.err(e, f"recursion ({' -> '.join((*self.t.stack, name))}) is not"
                           " supported", "BPF has no unbounded call stack: use a loop")
        if e.keywords:
            raise self.err(e, "keyword arguments to helper functions are not supported",
                           "pass them positionally")
        fn = self.t.info.functions[name]
        if len(fn.args.args) != len(e.args):
            raise self.err(e, f"{name}() takes {len(fn.args.args)} arguments,"
                           f" got {len(e.args)}")
        params: list[tuple[str, Type]] = []
        nonnull: set[str] = set()
        for p, a in zip(fn.args.args, e.args):
            t = self.t.expr(a)
            if isinstance(t, LitType):
                t = i64
            if t in (VOID, NONE) or isinstance(t, MapRefType):
                raise self.err(a, f"cannot pass a {t} to a helper function")
            if isinstance(t, RefType) and self.t.is_nonnull(a, t):
                nonnull.add(p.arg)
            params.append((p.arg, t))
        sub = Typer(self.t.info, fn, params, self.t.stack, nonnull, self.t.kind)
        sub.gen = 0
        sub.locked = self.t.locked
        typed = sub.run()
        self.t.out.inlined[id(e)] = typed
        self.res(e, ("inline", name))
        if sub.gen:                    # the helper moved the packet
            self.t.gen += 1
            self.t.flow.nonnull = {n for n in self.t.flow.nonnull
                                   if not _is_pkt(self.t.out.locals.get(n))}
        return typed.ret or VOID


    def subprog(self, e: ast.Call, name: str) -> Type:
        """A call of an ``@subprog`` function: typed like an inlined helper (per call
        site), lowered as a bpf-to-bpf call of one function per argument signature."""
        fn = self.t.info.functions[name]
        passed = 0
        for _, a in zip(fn.args.args, e.args, strict=False):
            t = self.t.expr(a)
            if t is CTX:
                continue                    # ctx travels as the hidden first argument
            passed += 1
            if isinstance(t, ArrayType | StructType) or not (
                    is_int(t) or t is BOOL or isinstance(t, RefType) or t is CURSOR):
                raise self.err(a, f"a @subprog argument is an integer, a bool, a ref or a"
                               f" cursor, not {t}", "pass a ref to the struct instead")
        if passed > 4:
            raise self.err(e, f"{name}() takes {passed} arguments besides ctx; a BPF"
                           " subprogram has 5 argument registers, one of them for ctx",
                           "pass a ref to a Struct that holds the values")
        ret = self.inline(e, name)
        typed = self.t.out.inlined[id(e)]
        if not (ret is VOID or ret is NONE or is_int(ret) or ret is BOOL):
            raise self.err(e, f"a @subprog returns an integer or bool, not {ret}",
                           "return refs from a plain (inlined) helper function")
        key = (name, tuple(t for _, t in typed.params),
               frozenset(n for n, t in typed.params
                         if isinstance(t, RefType) and self.t.is_nonnull(
                             e.args[[q for q, _ in typed.params].index(n)], t)))
        self.res(e, ("subprog", name, key))
        return ret


def _is_pkt(t: Type | None) -> bool:
    return (isinstance(t, RefType) and t.space == "pkt") or t is CURSOR
