"""Pass 3, typing: give every expression a type and resolve every name and call.

The result (:class:`FnTypes`) is all the lowering needs: it never decides anything itself.
Typing also enforces what the verifier will demand, so that mistakes surface as a
:class:`CompileError` at the Python line instead of a verifier log:

* refs that may be None (a header parse, a map lookup, a packet load) must be checked
  before use — ``if not eth: return XDP_PASS`` narrows ``eth`` for the rest of the block;
* packet refs die when the packet moves (``ctx.adjust_head``): using one afterwards is an
  error that says to parse again;
* helper functions are typed per call site (they are inlined), recursion is rejected.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from pyxdp.compiler.check import bounded_while, check_function
from pyxdp.compiler.frontend import ModuleInfo
from pyxdp.compiler.lang import Const, MapDecl
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
    MapRefType,
    RefType,
    StructType,
    Type,
    common,
    fits,
    i64,
    is_int,
    promote,
    u32,
)


@dataclass
class FnTypes:
    """Types and resolutions of one function (one instantiation for inlined helpers)."""

    fn: ast.FunctionDef
    params: list[tuple[str, Type]]
    types: dict[int, Type] = field(default_factory=dict)
    res: dict[int, Any] = field(default_factory=dict)
    locals: dict[str, Type] = field(default_factory=dict)
    ret: Type | None = None
    inlined: dict[int, FnTypes] = field(default_factory=dict)
    # names ever bound to c.header(...) / to any other ref: ipv4_csum of a name only ever
    # bound by header() sums exactly its 20 bytes (a pushed header has no option words)
    header_vars: set[str] = field(default_factory=set)
    other_ref_vars: set[str] = field(default_factory=set)

    def type_of(self, node: ast.AST) -> Type:
        return self.types[id(node)]


@dataclass
class Flow:
    """What is known at a program point: non-None refs and when each local was set."""

    nonnull: set[str] = field(default_factory=set)

    def copy(self) -> Flow:
        return Flow(set(self.nonnull))


# builtins that are kernel helper calls (refused while a bpf_spin_lock is held)
_HELPER_BUILTINS = frozenset({"ktime_get_ns", "ktime_get_coarse_ns", "get_prandom_u32",
                              "get_smp_processor_id", "redirect", "csum_diff",
                              "fib_lookup", "trace_printk", "tail_call"})


def is_spin_lock(t: Type) -> bool:
    return isinstance(t, StructType) and getattr(t.cls, "_spin_lock_", False)


class Typer:
    """Types one function body; ``stack`` holds the helpers being inlined (recursion)."""

    def __init__(self, info: ModuleInfo, fn: ast.FunctionDef, params: list[tuple[str, Type]],
                 stack: tuple[str, ...] = (), nonnull: set[str] | None = None,
                 kind: str = "xdp") -> None:
        self.info = info
        self.out = FnTypes(fn, params)
        self.stack = (*stack, fn.name)
        self.flow = Flow(set(nonnull or ()))
        self.kind = kind
        self.gen = 0                      # bumped whenever the packet may move
        self.var_gen: dict[str, int] = {}
        self.loops = 0
        # for-range loop variables in scope that the body never assigns: name -> (lo, hi)
        self.ranges: dict[str, tuple[int, int]] = {}
        self.locked = False               # inside `with v.lock:` (no helper calls)
        self.lock_header = False          # typing the `v.lock` of a with statement
        for name, t in params:
            self.out.locals[name] = t
            self.var_gen[name] = 0
        from pyxdp.compiler.typer_calls import CallTyper
        self.calls = CallTyper(self)

    # -- errors and helpers -------------------------------------------------------------
    def err(self, node: ast.AST, msg: str, hint: str | None = None) -> Exception:
        return self.info.error(node, msg, hint)

    def record(self, node: ast.AST, t: Type, res: Any = None) -> Type:
        self.out.types[id(node)] = t
        if res is not None:
            self.out.res[id(node)] = res
        return t

    def run(self) -> FnTypes:
        check_function(self.info, self.out.fn)
        self.block(self.out.fn.body)
        return self.out

    # -- statements ---------------------------------------------------------------------
    def block(self, body: list[ast.stmt]) -> bool:
        """Type statements; True when the block always leaves (return/break/continue)."""
        return any(self.stmt(stmt) for stmt in body)  # stops at the first that leaves

    def stmt(self, s: ast.stmt) -> bool:
        meth = getattr(self, "s_" + type(s).__name__, None)
        if meth is None:
            raise self.err(s, f"{type(s).__name__} statements are not supported")
        return bool(meth(s))

    def s_Pass(self, s: ast.Pass) -> None:
        return None

    def s_With(self, s: ast.With) -> bool:
        item = s.items[0].context_expr
        self.lock_header = True
        try:
            t = self.expr(item)
        finally:
            self.lock_header = False
        holder = self.out.types.get(id(item.value)) if isinstance(item, ast.Attribute) else None
        if not (isinstance(t, RefType) and is_spin_lock(t.target)):
            raise self.err(item, f"with statements take a SpinLock field of a map value, not"
                           f" {t}", "class Rec(Struct): lock: SpinLock ... with rec.lock:")
        if not (t.space == "map" and isinstance(holder, RefType)
                and isinstance(holder.target, StructType)):
            raise self.err(item, "a SpinLock is taken in a map value (the kernel keeps"
                           " bpf_spin_lock only there), not on the stack or in a packet",
                           "v = m.lookup(k); with v.lock: ...")
        locks = [f for f, (_, ft) in holder.target.fields.items() if is_spin_lock(ft)]
        if len(locks) > 1:
            raise self.err(item, f"{holder.target.name} has {len(locks)} SpinLock fields; the"
                           " kernel allows one bpf_spin_lock per map value")
        self.locked = True
        try:
            leaves = self.block(s.body)
        finally:
            self.locked = False
        return leaves

    def s_Expr(self, s: ast.Expr) -> None:
        if isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
            return  # docstring
        if not isinstance(s.value, ast.Call):
            raise self.err(s, "an expression statement has no effect", "assign or drop it")
        self.expr(s.value)
        pure = self._pure_call(s.value)
        if pure is not None:
            raise self.err(s, f"the result of {pure} is discarded: it only computes a value,"
                           " so this line does nothing",
                           "assign it, e.g. icmp.checksum = csum_replace2(icmp.checksum,"
                           " old, new)")

    # calls that only compute a value: as a statement they are always a mistake
    _PURE_BUILTINS = frozenset({"bswap16", "bswap32", "bswap64", "csum_fold", "csum_replace2",
                                "csum_replace4", "csum_diff", "ipv4_csum", "ip4", "load"})

    def _pure_call(self, call: ast.Call) -> str | None:
        """``name()`` when ``call`` has no effect but its value, else None."""
        f = call.func
        if isinstance(f, ast.Attribute):
            if f.attr == "load" and self.out.types.get(id(f.value)) in (CTX, CURSOR):
                return f"{ast.unparse(f)}()"
            return None
        if not isinstance(f, ast.Name):
            return None
        val = self.info.env.get(f.id)
        if isinstance(val, IntType | ArrayType):
            return f"the conversion {f.id}()"
        if isinstance(val, type) and issubclass(val, Struct):
            return f"{f.id}(...)"
        if f.id in self._PURE_BUILTINS and f.id not in self.info.functions:
            return f"{f.id}()"
        return None

    def s_Return(self, s: ast.Return) -> bool:
        t = VOID if s.value is None else self.expr(s.value)
        if len(self.stack) == 1 or self.out.fn is None:
            if not is_int(t):
                raise self.err(s, f"a program returns a verdict (an integer), not {t}",
                               "return XDP_PASS")
        elif self.out.ret is None:
            self.out.ret = i64 if isinstance(t, LitType) else t
        elif self.out.ret != t and not (is_int(t) and is_int(self.out.ret)):
            raise self.err(s, f"this function returns {self.out.ret} elsewhere, here {t}")
        return True

    def s_Break(self, s: ast.Break) -> bool:
        if not self.loops:
            raise self.err(s, "break outside a loop")
        return True

    s_Continue = s_Break

    def s_If(self, s: ast.If) -> bool:
        t_facts, f_facts = self.cond(s.test)
        start = self.flow
        self.flow = Flow(start.nonnull | t_facts)
        body_leaves = self.block(s.body)
        body_flow = self.flow
        self.flow = Flow(start.nonnull | f_facts)
        else_leaves = self.block(s.orelse)
        else_flow = self.flow
        if body_leaves and else_leaves:
            self.flow = Flow(start.nonnull)
            return True
        if body_leaves:
            self.flow = else_flow
        elif else_leaves:
            self.flow = body_flow
        else:
            self.flow = Flow(body_flow.nonnull & else_flow.nonnull)
        return False

    def _assigned(self, body: list[ast.stmt]) -> set[str]:
        names: set[str] = set()
        for st in body:
            for n in ast.walk(st):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    names.add(n.id)
        return names

    def _loop(self, body: list[ast.stmt]) -> None:
        killed = self._assigned(body)
        entry = Flow(self.flow.nonnull - killed)
        self.flow = entry.copy()
        self.loops += 1
        self.block(body)
        self.loops -= 1
        self.flow = entry

    def s_For(self, s: ast.For) -> None:
        args = s.iter.args  # type: ignore[attr-defined]
        types = [self.expr(a) for a in args]
        if all(isinstance(t, LitType) for t in types):
            bounds = [t.value for t in types]  # type: ignore[attr-defined]
            r = range(*bounds)
            if len(r) > 4096:
                raise self.err(s.iter, f"range of {len(r)} iterations is too long for the"
                               " verifier", "keep loops under 4096 iterations")
            lo, hi = (min(r), max(r)) if len(r) else (0, 0)
            t: Type = u32 if lo >= 0 and hi < 1 << 31 else i64
            self.record(s.iter, t, ("range", bounds))
            nonempty = len(r) > 0
        else:
            t, lo, hi = self._variable_range(s, args, types)
            nonempty = hi >= lo
        self.bind(s.target, t, s)  # type: ignore[arg-type]
        var = s.target.id if isinstance(s.target, ast.Name) else None
        outer = self.ranges.get(var) if var is not None else None
        if var is not None:
            if nonempty and var not in self._assigned(s.body):
                self.ranges[var] = (lo, hi)
            else:
                self.ranges.pop(var, None)
        try:
            self._loop(s.body)
        finally:
            if var is not None:
                self.ranges.pop(var, None)
                if outer is not None:
                    self.ranges[var] = outer

    def _variable_range(self, s: ast.For, args: list[ast.expr], types: list[Type]
                        ) -> tuple[Type, int, int]:
        """``range(n)``, ``range(lo, n[, step])`` with a variable stop: a constant start and
        step, and a stop whose largest value the compiler knows (``min(n, K)`` or a narrow
        type), so the loop runs at most a known number of times, as the verifier needs.
        Its values: ``(loop var type, lo, hi)``."""
        stop_e, stop_t = (args[0], types[0]) if len(args) == 1 else (args[1], types[1])
        lo_t = types[0] if len(args) > 1 else LitType(0)
        step_t = types[2] if len(args) > 2 else LitType(1)
        if not isinstance(lo_t, LitType) or not isinstance(step_t, LitType):
            raise self.err(s.iter, "a range() with a variable stop needs a constant start"
                           " and step", "for i in range(2, min(n, 16), 2): ...")
        if step_t.value <= 0:
            raise self.err(s.iter, "a range() with a variable stop counts up (step > 0)")
        if not is_int(stop_t):
            raise self.err(stop_e, f"range() takes integers, not {stop_t}")
        cap = self._static_max(stop_e, stop_t)
        lo = lo_t.value
        if lo < 0:
            raise self.err(s.iter, "a range() with a variable stop starts at 0 or above")
        if cap is None or len(range(lo, cap, step_t.value)) > 4096:
            raise self.err(stop_e, "the loop's bound is not known to the compiler: the"
                           " verifier needs at most 4096 iterations",
                           f"bound it: range(min({ast.unparse(stop_e)}, 64))")
        self.record(s.iter, u32, ("range_var", lo, step_t.value, stop_t))
        return u32, lo, max(lo, cap - 1)

    def _static_max(self, e: ast.expr, t: Type) -> int | None:
        """The largest value ``e`` can have, where the compiler knows one."""
        r = self.out.res.get(id(e), ("",))
        if r[0] == "minmax" and r[1] == "min" and isinstance(e, ast.Call):
            consts = [self.out.types[id(a)] for a in e.args]
            known = [c.value for c in consts if isinstance(c, LitType)]
            if known:
                return min(known)
        if isinstance(t, IntType) and t.bits <= 12 and not t.signed:
            return (1 << t.bits) - 1
        return None

    def s_While(self, s: ast.While) -> None:
        counter = bounded_while(s)
        cmp = s.test.values[0] if isinstance(s.test, ast.BoolOp) else s.test
        assert counter is not None and isinstance(cmp, ast.Compare)
        bound = self.expr(cmp.comparators[0])
        if not isinstance(bound, LitType):
            raise self.err(s, "unbounded while loop: the bound must be a constant",
                           "use for i in range(N)")
        self.cond(s.test)
        self._loop(s.body)

    def s_Assign(self, s: ast.Assign) -> None:
        if len(s.targets) != 1:
            raise self.err(s, "chained assignment is not supported", "assign one at a time")
        target = s.targets[0]
        if isinstance(target, ast.Tuple):
            if not isinstance(s.value, ast.Tuple) or len(s.value.elts) != len(target.elts):
                raise self.err(s, "tuple assignment needs a tuple of the same length",
                               "a, b = b, a")
            ts = [self.expr(v) for v in s.value.elts]
            for tgt, t, v in zip(target.elts, ts, s.value.elts):
                self.store(tgt, t, v)
            return
        t = self.expr(s.value)
        self.store(target, t, s.value)

    def s_AnnAssign(self, s: ast.AnnAssign) -> None:
        if not isinstance(s.target, ast.Name):
            raise self.err(s, "annotations only declare local variables")
        ann = self.type_expr(s.annotation)
        if s.target.id in self.out.locals and self.out.locals[s.target.id] != ann:
            raise self.err(s, f"{s.target.id} is already a {self.out.locals[s.target.id]}")
        self.out.locals[s.target.id] = ann
        self.var_gen[s.target.id] = self.gen
        if s.value is not None:
            self.store(s.target, self.expr(s.value), s.value)

    def s_AugAssign(self, s: ast.AugAssign) -> None:
        fake = ast.BinOp(left=s.target, op=s.op, right=s.value)
        ast.copy_location(fake, s)
        load_target = _as_load(s.target)
        fake.left = load_target
        t = self.expr(fake)
        self.out.res[id(s)] = fake
        self.store(s.target, t, fake)

    # -- assignment targets -------------------------------------------------------------
    def bind(self, target: ast.Name, t: Type, node: ast.AST) -> None:
        name = target.id
        if name in self.info.env and name not in self.out.locals and not name.startswith("_"):
            val = self.info.env[name]
            if isinstance(val, int | MapDecl | Const | type):
                raise self.err(target, f"cannot assign module-level name {name!r}",
                               "module constants are read-only; keep state in a map")
        cur = self.out.locals.get(name)
        if cur is None:
            if t in (VOID, NONE) or isinstance(t, MapRefType):
                raise self.err(node, f"cannot store a {t} in a variable")
            cur = i64 if isinstance(t, LitType) else t
            self.out.locals[name] = cur
        else:
            self.check_assignable(t, cur, node)
        self.record(target, cur)
        self.var_gen[name] = self.gen
        if isinstance(cur, RefType):
            v = node
            if (isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute)
                    and v.func.attr == "header"):
                self.out.header_vars.add(name)
            else:
                self.out.other_ref_vars.add(name)
            if self.is_nonnull(node, t):
                self.flow.nonnull.add(name)
            else:
                self.flow.nonnull.discard(name)

    def is_nonnull(self, value: ast.AST, t: Type) -> bool:
        if isinstance(t, RefType) and t.space == "stack":
            return True
        if isinstance(value, ast.Name):
            return value.id in self.flow.nonnull
        return bool(self.out.res.get(id(value), ("",))[0] == "struct_new")

    def check_assignable(self, t: Type, to: Type, node: ast.AST) -> None:
        if isinstance(to, IntType):
            if isinstance(t, LitType):
                if not fits(t.value, to):
                    raise self.err(node, f"constant {t.value} does not fit in {to.name}",
                                   f"cast explicitly: {to.host.name}({t.value})")
                return
            if isinstance(t, IntType) or t is BOOL:
                return
        elif (to is BOOL and (t is BOOL)) or (isinstance(to, ArrayType) and t == to):
            return
        elif isinstance(to, RefType) and isinstance(t, RefType) and t.target == to.target:
            if t.space == to.space:
                return
        elif to is t:
            return
        raise self.err(node, f"cannot assign a {t} to a {to}")

    def store(self, target: ast.expr, t: Type, value: ast.AST) -> None:
        if isinstance(target, ast.Name):
            self.bind(target, t, value)
            return
        if isinstance(target, ast.Attribute):
            ft = self.expr(target)
            res = self.out.res.get(id(target))
            if not res or res[0] not in ("field", "bits", "value"):
                raise self.err(target, f"cannot assign to {ast.unparse(target)}")
            self.check_assignable(t, ft, value)
            return
        if isinstance(target, ast.Subscript):
            ft = self.expr(target)
            self.check_assignable(t, ft, value)
            return
        raise self.err(target, f"cannot assign to {ast.unparse(target)}")

    # -- expressions --------------------------------------------------------------------
    def expr(self, e: ast.expr) -> Type:
        meth = getattr(self, "e_" + type(e).__name__, None)
        if meth is None:
            raise self.err(e, f"{type(e).__name__} expressions are not supported")
        t = meth(e)
        return self.record(e, t)

    def const_int(self, e: ast.expr, what: str) -> int:
        t = self.expr(e)
        if not isinstance(t, LitType):
            raise self.err(e, f"{what} must be a constant", "use a literal or a module constant")
        return t.value

    def e_Constant(self, e: ast.Constant) -> Type:
        if e.value is None:
            return NONE
        if isinstance(e.value, bool):
            return LitType(int(e.value))
        if isinstance(e.value, int):
            return LitType(e.value)
        raise self.err(e, f"{type(e.value).__name__} constants are not supported")

    def e_Name(self, e: ast.Name) -> Type:
        name = e.id
        if name in self.out.locals:
            t = self.out.locals[name]
            moved = self.var_gen.get(name, 0) < self.gen
            if moved and ((isinstance(t, RefType) and t.space == "pkt") or t is CURSOR):
                raise self.err(e, f"{name!r} points into the packet from before it was"
                               " moved (adjust_head/tail/meta)",
                               "parse the headers again with ctx.cursor()")
            self.out.res[id(e)] = ("local", name)
            return t
        if name not in self.info.env:
            if name in ("True", "False"):
                return LitType(int(name == "True"))
            raise self.err(e, f"name {name!r} is not defined")
        val = self.info.env[name]
        if isinstance(val, bool | int):
            self.out.res[id(e)] = ("const", int(val))
            return LitType(int(val))
        if isinstance(val, Const):
            self.out.res[id(e)] = ("config", name)
            return val.type.host
        if isinstance(val, MapDecl):
            self.out.res[id(e)] = ("map", val)
            return MapRefType(val)
        self.out.res[id(e)] = ("global", val)
        return NONE

    def e_Attribute(self, e: ast.Attribute) -> Type:
        base = self.expr(e.value)
        attr = e.attr
        if base is CTX:
            if attr in ("data", "data_end", "data_meta"):
                self.out.res[id(e)] = ("ctx_ptr", attr)
                return RAWPTR
            if attr in ("ingress_ifindex", "rx_queue_index", "egress_ifindex"):
                self.out.res[id(e)] = ("ctx_field", attr)
                return u32
        if isinstance(base, RefType):
            if isinstance(e.value, ast.Name) and base.space != "stack" and (
                    e.value.id not in self.flow.nonnull):
                raise self.err(e, f"{e.value.id!r} may be None here",
                               f"check it first: if not {e.value.id}: return ...")
            if (isinstance(e.value, ast.Call) and base.space == "map"
                    and not self.is_nonnull(e.value, base)):
                # `m.lookup(k).field`: a map value nobody checked (a packet load is left
                # alone: a bounds check already made on the path can cover it)
                raise self.err(e, f"the result of this lookup may be None; '.{attr}' on it"
                               " is an unchecked dereference (the verifier refuses it)",
                               f"name it and check it: x = ...; if not x: return ...;"
                               f" then x.{attr}")
            tgt = base.target
            if isinstance(tgt, StructType):
                if is_spin_lock(tgt):
                    raise self.err(e, "a SpinLock has no fields to read or write (the"
                                   " verifier forbids direct access)", "with v.lock: ...")
                if attr in tgt.fields:
                    off, ft = tgt.fields[attr]
                    if is_spin_lock(ft) and not self.lock_header:
                        raise self.err(e, f"the SpinLock {attr!r} is only used as"
                                       f" `with {ast.unparse(e)}:`", "with v.lock: ...")
                    self.out.res[id(e)] = ("field", off, ft)
                    if isinstance(ft, StructType):
                        return RefType(ft, base.space)
                    return ft.host if isinstance(ft, IntType) else ft
                if attr in tgt.bits:
                    bf = tgt.bits[attr]
                    off, ft = tgt.fields[bf.base]
                    assert isinstance(ft, IntType)  # Struct checks a bit field's base
                    self.out.res[id(e)] = ("bits", off, ft, bf)
                    return ft.host
            elif isinstance(tgt, IntType) and attr == "value":
                self.out.res[id(e)] = ("value", 0, tgt)
                return tgt.host
        if base is NONE and self.out.res.get(id(e.value), ("",))[0] == "global":
            raise self.err(e, f"{ast.unparse(e)} is not available in programs")
        if isinstance(base, MapRefType) or base is CURSOR:
            raise self.err(e, f"{ast.unparse(e)} must be called")
        raise self.err(e, f"{base} has no attribute {attr!r}")

    def e_Subscript(self, e: ast.Subscript) -> Type:
        base = self.expr(e.value)
        if not isinstance(base, ArrayType):
            raise self.err(e, f"cannot index a {base}")
        if isinstance(e.slice, ast.Name) and e.slice.id in self.ranges:
            lo, hi = self.ranges[e.slice.id]
            if not 0 <= lo <= hi < base.n:
                raise self.err(e, f"{e.slice.id} runs over {lo}..{hi}, outside {base}"
                               f" (0..{base.n - 1})", f"for {e.slice.id} in range({base.n})")
            if not isinstance(e.value, ast.Attribute):
                raise self.err(e, "a variable index needs an array field (ref.field[i])",
                               "index the field itself: ip6.saddr[i]")
            self.expr(e.slice)
            self.out.res[id(e)] = ("vindex", e.slice)
            elem = base.elem
            return elem.host if isinstance(elem, IntType) else elem
        if not isinstance(e.slice, ast.Constant) and not isinstance(
                self.expr(e.slice), LitType):
            raise self.err(e, f"array index {ast.unparse(e.slice)} is neither a constant nor"
                           " the variable of an enclosing for-range loop",
                           "for i in range(N): x = arr[i]  (N within the array)")
        idx = self.const_int(e.slice, "an array index")
        if not 0 <= idx < base.n:
            raise self.err(e, f"index {idx} out of range for {base}")
        self.out.res[id(e)] = ("index", idx)
        elem = base.elem
        return elem.host if isinstance(elem, IntType) else elem

    def e_Tuple(self, e: ast.Tuple) -> Type:
        raise self.err(e, "tuples only appear in swaps: a, b = b, a")

    def e_Call(self, e: ast.Call) -> Type:
        t = self.calls.call(e)
        if self.locked:
            r = self.out.res.get(id(e), ("",))
            helper = r[0] in ("map", "subprog") or (
                r[0] == "ctx" and r[1] in ("adjust_head", "adjust_tail", "adjust_meta", "buff_len",
                                           "load_bytes", "store_bytes")) or (
                r[0] == "builtin" and r[1] in _HELPER_BUILTINS)
            if helper:
                raise self.err(e, f"{ast.unparse(e.func)}() calls a kernel function while a"
                               " bpf_spin_lock is held, which the verifier refuses",
                               "call it before or after the with block")
        return t

    def e_IfExp(self, e: ast.IfExp) -> Type:
        tf, ff = self.cond(e.test)
        saved = self.flow
        self.flow = Flow(saved.nonnull | tf)
        a = self.expr(e.body)
        self.flow = Flow(saved.nonnull | ff)
        b = self.expr(e.orelse)
        self.flow = saved
        if isinstance(a, LitType) and isinstance(b, LitType):
            return i64
        if is_int(a) and is_int(b):
            return _arith(a, b)
        if a == b:
            return a
        raise self.err(e, f"both branches must have the same type ({a} vs {b})")

    def e_UnaryOp(self, e: ast.UnaryOp) -> Type:
        if isinstance(e.op, ast.Not):
            self.cond(e.operand)
            return BOOL
        t = self.expr(e.operand)
        if isinstance(t, LitType):
            v = t.value
            return LitType({ast.USub: -v, ast.UAdd: v, ast.Invert: ~v}[type(e.op)])
        if not isinstance(t, IntType):
            raise self.err(e, f"cannot apply {type(e.op).__name__} to {t}")
        return promote(t)

    def e_BinOp(self, e: ast.BinOp) -> Type:
        a, b = self.expr(e.left), self.expr(e.right)
        op = e.op
        if a is RAWPTR or b is RAWPTR:
            if isinstance(op, ast.Add) and is_int(b):
                return RAWPTR
            if isinstance(op, ast.Sub) and a is RAWPTR and b is RAWPTR:
                return i64
            if isinstance(op, ast.Sub) and is_int(b):
                return RAWPTR
            raise self.err(e, "packet pointers only support + offset, - offset and p - q")
        if not (is_int(a) and is_int(b)):
            refs = [x for x in (a, b) if isinstance(x, RefType) and isinstance(
                x.target, IntType)]
            hint = ("a map lookup gives a reference: use .value for its integer"
                    " (v = m.lookup(k); if v: x = v.value + 1)") if refs else (
                "cast bools with u8(b)" if BOOL in (a, b) else "arithmetic works on integers")
            raise self.err(e, f"unsupported operand types {a} and {b}", hint)
        if isinstance(op, ast.Pow):
            if isinstance(a, LitType) and isinstance(b, LitType) and b.value >= 0:
                return LitType(a.value ** b.value)
            raise self.err(e, "'**' (power) is not supported on variables",
                           "use shifts (1 << n) or multiplication")
        if isinstance(a, LitType) and isinstance(b, LitType):
            return LitType(_fold(self, e, a.value, b.value))
        if isinstance(op, ast.LShift | ast.RShift):
            lt = promote(a) if isinstance(a, IntType) else i64
            if isinstance(b, LitType) and not 0 <= b.value < lt.bits:
                raise self.err(e, f"shift by {b.value} is out of range for {lt.name}",
                               f"shift counts are 0..{lt.bits - 1}")
            return lt
        t = _arith(a, b)
        if isinstance(op, ast.FloorDiv | ast.Mod):
            if isinstance(b, LitType) and b.value == 0:
                raise self.err(e, "division by zero")
            if t.signed:
                raise self.err(e, f"signed division/modulo of {t.name} is not supported"
                               " (Python floors, C truncates, BPF v3 has no sdiv)",
                               "cast to unsigned: u32(a) // u32(b)")
        return t

    def e_BoolOp(self, e: ast.BoolOp) -> Type:
        self.cond(e)
        return BOOL

    def e_Compare(self, e: ast.Compare) -> Type:
        left = e.left
        lt = self.expr(left)
        for op, right in zip(e.ops, e.comparators):
            if isinstance(op, ast.In | ast.NotIn) and isinstance(right, ast.Tuple):
                if not is_int(lt) or not all(is_int(self.expr(x)) for x in right.elts):
                    raise self.err(e, "'in' compares an integer with a tuple of integers")
                self.record(right, lt)
                continue
            rt = self.expr(right)
            if isinstance(op, ast.Is | ast.IsNot):
                if rt is not NONE or not isinstance(lt, RefType):
                    raise self.err(e, "'is' only compares a ref with None",
                                   "use == for values")
            elif isinstance(op, ast.In | ast.NotIn):
                raise self.err(e, "'in' only tests membership in a tuple of integers",
                               "x in (1, 2, 3)")
            elif lt is RAWPTR and rt is RAWPTR:
                pass
            elif not (is_int(lt) and is_int(rt)) and not (lt is BOOL and rt is BOOL):
                raise self.err(e, f"cannot compare {lt} with {rt}")
            lt = rt
        return BOOL

    # -- conditions: types plus the None facts they establish ---------------------------
    def cond(self, e: ast.expr) -> tuple[set[str], set[str]]:
        """Type ``e`` in a boolean context; return (names non-None if true, if false)."""
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
            t, f = self.cond(e.operand)
            self.record(e, BOOL)
            return f, t
        if isinstance(e, ast.BoolOp):
            saved = self.flow
            acc_t: set[str] = set()
            acc_f: set[str] | None = None
            is_and = isinstance(e.op, ast.And)
            extra: set[str] = set()
            for v in e.values:
                self.flow = Flow(saved.nonnull | extra)
                t, f = self.cond(v)
                if is_and:
                    extra |= t
                    acc_t |= t
                    acc_f = f if acc_f is None else acc_f & f
                else:
                    extra |= f
                    acc_f = (acc_f or set()) | f
                    acc_t = t if not acc_t and v is e.values[0] else acc_t & t
            self.flow = saved
            self.record(e, BOOL)
            return acc_t, acc_f or set()
        ty = self.expr(e)
        if isinstance(e, ast.Name) and isinstance(ty, RefType):
            return {e.id}, set()
        if isinstance(e, ast.Compare) and len(e.ops) == 1 and isinstance(e.left, ast.Name):
            if isinstance(e.ops[0], ast.IsNot):
                return {e.left.id}, set()
            if isinstance(e.ops[0], ast.Is):
                return set(), {e.left.id}
        if not (ty is BOOL or is_int(ty) or isinstance(ty, RefType)):
            raise self.err(e, f"a {ty} cannot be used as a condition")
        return set(), set()

    # -- type expressions ---------------------------------------------------------------
    def type_expr(self, e: ast.expr, storage: bool = False) -> Type:
        """The type an annotation or type argument names; ``storage=True`` keeps the
        byte order of ``be16/be32/be64`` (what memory holds), else the host type."""
        try:
            val = eval(compile(ast.Expression(e), self.info.filename, "eval"),
                       dict(self.info.env))
        except Exception:
            raise self.err(e, f"{ast.unparse(e)} is not a type") from None
        if isinstance(val, type) and issubclass(val, Struct):
            return RefType(val.__pyxdp_type__, "stack")
        if isinstance(val, IntType | ArrayType):
            return val.host if isinstance(val, IntType) and not storage else val
        if val is bool:
            return BOOL
        raise self.err(e, f"{ast.unparse(e)} is not a type", "use u8..u64, i8..i64 or a Struct")


def _as_load(target: ast.expr) -> ast.expr:
    """A Load-context copy of an assignment target (for ``x += 1``)."""
    new = ast.parse(ast.unparse(target), mode="eval").body
    for a, b in zip(ast.walk(new), ast.walk(target)):
        ast.copy_location(a, b)
    return new


def _arith(a: Type, b: Type) -> IntType:
    if isinstance(a, LitType):
        return promote(b)  # type: ignore[arg-type]
    if isinstance(b, LitType):
        return promote(a)  # type: ignore[arg-type]
    return common(a, b)  # type: ignore[arg-type]


def _fold(ty: Typer, e: ast.BinOp, a: int, b: int) -> int:
    op = e.op
    if isinstance(op, ast.FloorDiv | ast.Mod):
        if b == 0:
            raise ty.err(e, "division by zero")
        if a < 0 or b < 0:
            raise ty.err(e, "constant division of negative numbers is ambiguous (Python"
                         " floors, C truncates)", "write the result")
        return a // b if isinstance(op, ast.FloorDiv) else a % b
    if isinstance(op, ast.LShift | ast.RShift) and not 0 <= b < 64:
        raise ty.err(e, f"shift by {b} is out of range", "shift counts are 0..63")
    fns = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b,
           ast.LShift: lambda: a << b, ast.RShift: lambda: a >> b, ast.BitAnd: lambda: a & b,
           ast.BitOr: lambda: a | b, ast.BitXor: lambda: a ^ b}
    return fns[type(op)]()
