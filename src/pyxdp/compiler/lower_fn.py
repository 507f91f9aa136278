"""Pass 4, lowering: typed statements and expressions → LLVM IR (via llvmlite).

Locals live in ``alloca`` slots (zeroed at entry, so a variable read on a path that never
set it is 0 rather than undefined) that LLVM's mem2reg turns into registers; helper
functions are inlined by lowering their body in a new :class:`Frame`.  Every statement
sets a debug location, which becomes ``.BTF.ext`` line info.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

import llvmlite.ir as ir

from pyxdp.compiler.typer import FnTypes, _arith
from pyxdp.compiler.types import (
    BOOL,
    CURSOR,
    RAWPTR,
    ArrayType,
    IntType,
    LitType,
    RefType,
    StructType,
    Type,
    i64,
    is_int,
)

PTR = ir.PointerType()
I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
NULL = ir.Constant(PTR, None)


def ir_type(t: Type) -> ir.Type:
    if isinstance(t, IntType):
        return ir.IntType(t.bits)
    if t is BOOL:
        return I1
    if isinstance(t, ArrayType):
        if t.elem.size == 1:
            # byte arrays travel as one wide integer: LLVM splits its loads and stores by
            # the known alignment (3 x u16 for a MAC) instead of byte by byte
            return ir.IntType(8 * t.n)
        return ir.ArrayType(ir_type(t.elem), t.n)
    if isinstance(t, LitType):
        return I64
    return PTR


def natural_align(offset: int, size: int) -> int:
    """C's assumption for a field at ``offset``: aligned to its size as far as the
    offset allows (headers are assumed to start aligned, like ``struct iphdr``)."""
    a = size if size in (1, 2, 4, 8) else 1
    while a > 1 and offset % a:
        a //= 2
    return a


@dataclass
class Frame:
    """One function body being lowered (the program, or an inlined helper)."""

    types: FnTypes
    slots: dict[str, ir.AllocaInstr] = field(default_factory=dict)
    ret_block: ir.Block | None = None
    ret_slot: ir.AllocaInstr | None = None
    loops: list[tuple[ir.Block, ir.Block]] = field(default_factory=list)


class FnLower:
    """Lowers one program function (with its inlined helpers) into ``fn``."""

    def __init__(self, module_lower: Any, fn: ir.Function, typed: FnTypes, kind: str,
                 scope: Any) -> None:
        self.ml = module_lower
        self.info = module_lower.info
        self.fn = fn
        self.kind = kind
        self.scope = scope
        self.entry = fn.append_basic_block("entry")
        self.alloca_builder = ir.IRBuilder(self.entry)
        body = fn.append_basic_block("body")
        self.b = ir.IRBuilder(body)
        self.frame = Frame(typed)
        self.ctx = fn.args[0]
        from pyxdp.compiler.lower_calls import CallLower
        self.calls = CallLower(self)

    # -- plumbing -----------------------------------------------------------------------
    def t(self, node: ast.AST) -> Type:
        return self.frame.types.types[id(node)]

    def res(self, node: ast.AST) -> Any:
        return self.frame.types.res.get(id(node))

    def at(self, node: ast.stmt) -> None:
        line = getattr(node, "lineno", None)
        if line is not None:
            loc = self.ml.di.location(self.scope, line, node.col_offset + 1)
            self.b.debug_metadata = loc

    def alloca(self, ty: ir.Type, name: str = "", zero: bool = True) -> ir.AllocaInstr:
        ab = self.alloca_builder
        ab.debug_metadata = self.b.debug_metadata
        slot = ab.alloca(ty, name=name)
        if isinstance(ty, ir.ArrayType | ir.LiteralStructType | ir.IdentifiedStructType):
            slot.align = 8         # aggregates: zeroed and copied in 8-byte words, as clang does
        if zero:
            ab.store(ir.Constant(ty, None), slot)
        return slot

    def new_block(self, name: str) -> ir.Block:
        return self.fn.append_basic_block(name)

    def terminated(self) -> bool:
        return self.b.block.is_terminated

    def slot(self, name: str) -> ir.AllocaInstr:
        fr = self.frame
        if name not in fr.slots:
            t = fr.types.locals[name]
            fr.slots[name] = self.alloca(ir_type(t), name)
        return fr.slots[name]

    def run(self) -> None:
        self.at(self.frame.types.fn)
        self.block(self.frame.types.fn.body)
        if not self.terminated():
            self.b.ret(ir.Constant(I32, 2 if self.kind == "xdp" else 0))
        self.alloca_builder.branch(self.fn.blocks[1])

    # -- conversions --------------------------------------------------------------------
    def conv(self, v: ir.Value, frm: Type, to: Type) -> ir.Value:
        if isinstance(to, IntType):
            to = to.host
            if frm is BOOL:
                return self.b.zext(v, ir.IntType(to.bits))
            assert isinstance(frm, IntType), frm
            fb, tb = frm.bits, to.bits
            if fb == tb:
                return v
            if fb > tb:
                return self.b.trunc(v, ir.IntType(tb))
            return (self.b.sext if frm.signed else self.b.zext)(v, ir.IntType(tb))
        return v

    def expr_as(self, e: ast.expr, to: Type) -> ir.Value:
        t = self.t(e)
        if isinstance(t, LitType):
            if isinstance(to, IntType):
                return ir.Constant(ir.IntType(to.bits), to.host.wrap(t.value) & (
                    (1 << to.bits) - 1))
            if to is BOOL:
                return ir.Constant(I1, int(bool(t.value)))
            return ir.Constant(I64, t.value)
        return self.conv(self.expr(e), t, to)

    def truth(self, e: ast.expr) -> ir.Value:
        """``e`` as an i1 in a boolean context (ints: != 0, refs: not None)."""
        t = self.t(e)
        if isinstance(e, ast.BoolOp | ast.UnaryOp) and t is BOOL:
            return self.expr(e)
        if isinstance(t, LitType):
            return ir.Constant(I1, int(bool(t.value)))
        v = self.expr(e)
        if t is BOOL:
            return v
        if isinstance(t, IntType):
            return self.b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))
        return self.b.icmp_unsigned("!=", v, NULL)

    def branch(self, e: ast.expr, tb: ir.Block, fb: ir.Block) -> None:
        """Branch on ``e`` with short-circuit control flow (no materialised bools)."""
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
            self.branch(e.operand, fb, tb)
            return
        if isinstance(e, ast.BoolOp):
            for v in e.values[:-1]:
                nxt = self.new_block("sc")
                if isinstance(e.op, ast.And):
                    self.branch(v, nxt, fb)
                else:
                    self.branch(v, tb, nxt)
                self.b.position_at_end(nxt)
            self.branch(e.values[-1], tb, fb)
            return
        self.b.cbranch(self.truth(e), tb, fb)

    # -- statements ---------------------------------------------------------------------
    def block(self, body: list[ast.stmt]) -> None:
        for s in body:
            if self.terminated():
                return          # dead code after return/break
            self.at(s)
            getattr(self, "s_" + type(s).__name__)(s)

    def s_Pass(self, s: ast.Pass) -> None:
        pass

    def s_Expr(self, s: ast.Expr) -> None:
        if isinstance(s.value, ast.Call):
            self.expr(s.value)

    def s_Return(self, s: ast.Return) -> None:
        fr = self.frame
        if fr.ret_block is None:
            assert s.value is not None
            self.b.ret(self.expr_as(s.value, IntType(32, True)))
            return
        if s.value is not None and fr.ret_slot is not None:
            self.b.store(self.expr_as(s.value, fr.types.ret), fr.ret_slot)  # type: ignore[arg-type]
        self.b.branch(fr.ret_block)

    def s_With(self, s: ast.With) -> None:
        """``with v.lock:``: bpf_spin_lock, the body (which always falls through: the
        checker refuses return/break/continue out of it), bpf_spin_unlock."""
        lock = self.expr(s.items[0].context_expr)
        self.calls.helper("spin_lock", I64, [lock])
        self.block(s.body)
        self.calls.helper("spin_unlock", I64, [lock])

    def s_Break(self, s: ast.Break) -> None:
        self.b.branch(self.frame.loops[-1][1])

    def s_Continue(self, s: ast.Continue) -> None:
        self.b.branch(self.frame.loops[-1][0])

    def s_If(self, s: ast.If) -> None:
        then, other, done = (self.new_block(n) for n in ("then", "else", "endif"))
        self.branch(s.test, then, other if s.orelse else done)
        self.b.position_at_end(then)
        self.block(s.body)
        if not self.terminated():
            self.b.branch(done)
        if s.orelse:
            self.b.position_at_end(other)
            self.at(s.orelse[0])
            self.block(s.orelse)
            if not self.terminated():
                self.b.branch(done)
        else:
            other.parent.blocks.remove(other)
        self.b.position_at_end(done)

    def s_For(self, s: ast.For) -> None:
        r = self.res(s.iter)
        t = self.t(s.iter)
        assert isinstance(s.target, ast.Name)
        var = self.slot(s.target.id)
        ty = ir.IntType(t.bits)  # type: ignore[attr-defined]
        stop_v: ir.Value | None = None
        if r[0] == "range_var":          # range(lo, n, step): n evaluated once, as Python
            _, start, step, stop_t = r
            stop_e = s.iter.args[0] if len(s.iter.args) == 1 else s.iter.args[1]  # type: ignore[attr-defined]
            host = stop_t.host
            stop_v = self.conv(self.expr(stop_e), stop_t, host)
            if host.bits < 64:
                stop_v = (self.b.sext if host.signed else self.b.zext)(stop_v, I64)
            signed = host.signed
        else:
            start, stop, step = _range(r[1])
        self.b.store(ir.Constant(ty, start), var)
        head, body, latch, done = (self.new_block(n) for n in ("for", "body", "latch", "endfor"))
        self.b.branch(head)
        self.b.position_at_end(head)
        i = self.b.load(var)
        if stop_v is not None:           # i (u32, >= 0) < stop, compared as 64-bit values
            wide = self.b.zext(i, I64)
            cmp = self.b.icmp_signed if signed else self.b.icmp_unsigned
            self.b.cbranch(cmp("<", wide, stop_v), body, done)
        else:
            op = "<" if step > 0 else ">"
            cmp = self.b.icmp_signed if t.signed else self.b.icmp_unsigned  # type: ignore[attr-defined]
            self.b.cbranch(cmp(op, i, ir.Constant(ty, stop)), body, done)
        self.b.position_at_end(body)
        self.frame.loops.append((latch, done))
        self.block(s.body)
        self.frame.loops.pop()
        if not self.terminated():
            self.b.branch(latch)
        self.b.position_at_end(latch)
        self.b.store(self.b.add(self.b.load(var), ir.Constant(ty, step)), var)
        self.b.branch(head)
        self.b.position_at_end(done)

    def s_While(self, s: ast.While) -> None:
        head, body, done = (self.new_block(n) for n in ("while", "wbody", "endwhile"))
        self.b.branch(head)
        self.b.position_at_end(head)
        self.branch(s.test, body, done)
        self.b.position_at_end(body)
        self.frame.loops.append((head, done))
        self.block(s.body)
        self.frame.loops.pop()
        if not self.terminated():
            self.b.branch(head)
        self.b.position_at_end(done)

    def s_Assign(self, s: ast.Assign) -> None:
        target = s.targets[0]
        if isinstance(target, ast.Tuple):
            assert isinstance(s.value, ast.Tuple)
            vals = [(self.expr_value(v), self.t(v)) for v in s.value.elts]
            for tgt, (v, t) in zip(target.elts, vals):
                self.assign(tgt, v, t)
            return
        self.assign(target, self.expr_value(s.value), self.t(s.value))

    def s_AnnAssign(self, s: ast.AnnAssign) -> None:
        if s.value is not None:
            self.assign(s.target, self.expr_value(s.value), self.t(s.value))

    def s_AugAssign(self, s: ast.AugAssign) -> None:
        fake = self.res(s)
        self.assign(s.target, self.expr(fake), self.t(fake))

    def expr_value(self, e: ast.expr) -> Any:
        """Evaluate ``e`` now; constants stay Python ints until they meet a type."""
        t = self.t(e)
        return t.value if isinstance(t, LitType) else self.expr(e)

    def coerce(self, v: Any, frm: Type, to: Type) -> ir.Value:
        if isinstance(frm, LitType):
            if isinstance(to, IntType):
                return ir.Constant(ir.IntType(to.bits), v & ((1 << to.bits) - 1))
            return ir.Constant(ir_type(to), v)
        return self.conv(v, frm, to)

    def assign(self, target: ast.expr, v: Any, t: Type) -> None:
        if isinstance(target, ast.Name):
            to = self.frame.types.locals[target.id]
            self.b.store(self.coerce(v, t, to), self.slot(target.id))
            return
        ptr, storage, bits = self.calls.addr_of(target)
        if bits is not None:
            assert isinstance(storage, IntType)     # Struct checks a bit field's base
            self.calls.store_bits(ptr, storage, bits, self.coerce(v, t, storage.host))
            return
        self.calls.store_field(ptr, storage, self.coerce(v, t, storage))

    # -- expressions --------------------------------------------------------------------
    def expr(self, e: ast.expr) -> ir.Value:
        t = self.t(e)
        if isinstance(t, LitType):
            return ir.Constant(I64, t.value)
        return getattr(self, "e_" + type(e).__name__)(e)

    def e_Name(self, e: ast.Name) -> ir.Value:
        r = self.res(e)
        if r[0] == "local":
            return self.b.load(self.slot(e.id))
        if r[0] == "config":
            return self.ml.load_config(self.b, r[1])
        raise AssertionError(r)

    def e_Attribute(self, e: ast.Attribute) -> ir.Value:
        r = self.res(e)
        if r[0] in ("ctx_ptr", "ctx_field"):
            return self.calls.ctx_load(e.attr, as_ptr=r[0] == "ctx_ptr")
        ptr, storage, bits = self.calls.addr_of(e)
        if isinstance(storage, StructType):
            return ptr
        if bits is not None:
            assert isinstance(storage, IntType)     # Struct checks a bit field's base
            return self.calls.load_bits(ptr, storage, bits)
        return self.calls.load_field(ptr, storage)

    def e_Subscript(self, e: ast.Subscript) -> ir.Value:
        if isinstance(e.value, ast.Attribute):        # one element of a field: load only it
            ptr, storage, _ = self.calls.addr_of(e)
            return self.calls.load_field(ptr, storage)
        arr = self.expr(e.value)
        idx = self.res(e)[1]
        if isinstance(arr.type, ir.IntType):          # a byte array (little-endian)
            return self.b.trunc(self.b.lshr(arr, ir.Constant(arr.type, 8 * idx)), I8)
        return self.b.extract_value(arr, idx)

    def e_Call(self, e: ast.Call) -> ir.Value:
        return self.calls.call(e)

    def e_IfExp(self, e: ast.IfExp) -> ir.Value:
        # real branches: only the chosen arm runs (an arm may call a helper, update a map
        # or change the packet); LLVM makes a select of it where that is the same
        t = self.t(e)
        yes, no, done = self.new_block("ift"), self.new_block("iff"), self.new_block("ifx")
        self.b.cbranch(self.truth(e.test), yes, no)
        self.b.position_at_end(yes)
        a = self.expr_as(e.body, t)
        a_end = self.b.block
        self.b.branch(done)
        self.b.position_at_end(no)
        b = self.expr_as(e.orelse, t)
        b_end = self.b.block
        self.b.branch(done)
        self.b.position_at_end(done)
        phi = self.b.phi(a.type)
        phi.add_incoming(a, a_end)
        phi.add_incoming(b, b_end)
        return phi

    def e_UnaryOp(self, e: ast.UnaryOp) -> ir.Value:
        if isinstance(e.op, ast.Not):
            return self.b.not_(self.truth(e.operand))
        t = self.t(e)
        v = self.expr_as(e.operand, t)
        if isinstance(e.op, ast.USub):
            return self.b.neg(v)
        if isinstance(e.op, ast.Invert):
            return self.b.not_(v)
        return v

    def e_BoolOp(self, e: ast.BoolOp) -> ir.Value:
        tb, fb, done = self.new_block("bt"), self.new_block("bf"), self.new_block("bool")
        self.branch(e, tb, fb)
        self.b.position_at_end(tb)
        self.b.branch(done)
        self.b.position_at_end(fb)
        self.b.branch(done)
        self.b.position_at_end(done)
        phi = self.b.phi(I1)
        phi.add_incoming(ir.Constant(I1, 1), tb)
        phi.add_incoming(ir.Constant(I1, 0), fb)
        return phi

    def e_BinOp(self, e: ast.BinOp) -> ir.Value:
        t = self.t(e)
        b = self.b
        if t is RAWPTR:
            off = self.expr_as(e.right, i64)
            if isinstance(e.op, ast.Sub):
                off = b.neg(off)
            return b.gep(self.expr(e.left), [off], source_etype=I8)
        if self.t(e.left) is RAWPTR:      # p - q
            # the difference is a scalar only once it is computed: hidden from the
            # optimiser, LLVM cannot reassociate (x + end) - data into x + end, which is
            # arithmetic on pkt_end that the verifier prohibits
            return self.calls.barrier(b.sub(b.ptrtoint(self.expr(e.left), I64),
                                            b.ptrtoint(self.expr(e.right), I64)))
        assert isinstance(t, IntType)
        lv = self.expr_as(e.left, t)
        rv = self.expr_as(e.right, t)
        op = e.op
        if isinstance(op, ast.LShift | ast.RShift):
            if not isinstance(self.t(e.right), LitType):
                rv = b.and_(rv, ir.Constant(rv.type, t.bits - 1))  # defined, like BPF
            if isinstance(op, ast.LShift):
                return b.shl(lv, rv)
            return b.ashr(lv, rv) if t.signed else b.lshr(lv, rv)
        simple = {ast.Add: b.add, ast.Sub: b.sub, ast.Mult: b.mul, ast.BitAnd: b.and_,
                  ast.BitOr: b.or_, ast.BitXor: b.xor, ast.FloorDiv: b.udiv, ast.Mod: b.urem}
        return simple[type(op)](lv, rv)

    def e_Compare(self, e: ast.Compare) -> ir.Value:
        result = None
        left = e.left
        for op, right in zip(e.ops, e.comparators):
            c = self.compare(left, op, right)
            result = c if result is None else self.b.and_(result, c)
            left = right
        return result

    def compare(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> ir.Value:
        lt, rt = self.t(left), self.t(right)
        sym = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
               ast.GtE: ">=", ast.Is: "==", ast.IsNot: "!=", ast.In: "", ast.NotIn: ""}[type(op)]
        if isinstance(op, ast.In | ast.NotIn):
            assert isinstance(right, ast.Tuple)
            hits = [self.compare(left, ast.Eq(), x) for x in right.elts]
            v = hits[0] if hits else ir.Constant(I1, 0)
            for h in hits[1:]:
                v = self.b.or_(v, h)
            return self.b.not_(v) if isinstance(op, ast.NotIn) else v
        if isinstance(op, ast.Is | ast.IsNot):
            return self.b.icmp_unsigned(sym, self.expr(left), NULL)
        if lt is RAWPTR:
            return self.b.icmp_unsigned(sym, self.expr(left), self.expr(right))
        if lt is BOOL:
            return self.b.icmp_unsigned(sym, self.expr(left), self.expr(right))
        assert is_int(lt) and is_int(rt)
        ct = _arith(lt, rt) if not (isinstance(lt, LitType) and isinstance(rt, LitType)) else i64
        lv, rv = self.expr_as(left, ct), self.expr_as(right, ct)
        if ct.signed:
            return self.b.icmp_signed(sym, lv, rv)
        return self.b.icmp_unsigned(sym, lv, rv)


def _range(bounds: list[int]) -> tuple[int, int, int]:
    r = range(*bounds)
    return r.start, r.stop, r.step


__all__ = ["CURSOR", "FnLower", "Frame", "RefType", "ir_type"]


def abi_kind(t: Type) -> str:
    """How a @subprog parameter travels: "ctx" (the hidden first argument), "ptr", "long"."""
    from pyxdp.compiler.types import CTX
    if t is CTX:
        return "ctx"
    if is_int(t) or t is BOOL or isinstance(t, LitType):
        return "long"
    return "ptr"


class SubprogLower(FnLower):
    """Lowers an ``@subprog`` body into its own function: ctx is argument 0, the other
    parameters follow (integers as 64-bit registers), the result is returned as i64."""

    def run(self) -> None:
        from pyxdp.compiler.lower_calls import from_abi, to_abi
        from pyxdp.compiler.types import CTX, NONE, VOID
        fr, typed = self.frame, self.frame.types
        self.at(typed.fn)
        fr.ret_block = self.new_block("ret")
        ret = typed.ret
        if ret is not None and ret is not VOID and ret is not NONE:
            fr.ret_slot = self.alloca(ir_type(ret), "ret")
        args = iter(self.fn.args[1:])
        for pname, ptype in typed.params:
            v = self.ctx if ptype is CTX else from_abi(self.b, next(args), ptype)
            self.b.store(v, self.slot(pname))
        self.block(typed.fn.body)
        if not self.terminated():
            self.b.branch(fr.ret_block)
        self.b.position_at_end(fr.ret_block)
        if fr.ret_slot is not None:
            self.b.ret(to_abi(self.b, self.b.load(fr.ret_slot), ret))  # type: ignore[arg-type]
        else:
            self.b.ret(ir.Constant(I64, 0))
        self.alloca_builder.branch(self.fn.blocks[1])
