"""Lowering of memory access and calls: fields (with byte swaps), bounds-checked packet
access, BPF helper calls, map methods and inlined helper functions."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

import llvmlite.ir as ir

from pyxdp.compiler.lower_fn import I8, I32, I64, NULL, PTR, Frame, ir_type, natural_align
from pyxdp.compiler.types import (
    BOOL,
    CTX,
    NONE,
    VOID,
    ArrayType,
    BitField,
    IntType,
    RefType,
    StructType,
    Type,
    u64,
)
from pyxdp.isa import HELPERS

if TYPE_CHECKING:
    from pyxdp.compiler.lower_fn import FnLower

_CTX_OFFSETS = {"xdp": {"data": 0, "data_end": 4, "data_meta": 8, "ingress_ifindex": 12,
                        "rx_queue_index": 16, "egress_ifindex": 20},
                "tc": {"data": 76, "data_end": 80, "data_meta": 140, "ingress_ifindex": 40,
                       "rx_queue_index": 32, "egress_ifindex": 40}}
MAX_PACKET_OFF = 0xFFFF


class CallLower:
    def __init__(self, fl: FnLower) -> None:
        self.fl = fl

    @property
    def b(self) -> ir.IRBuilder:
        return self.fl.b

    def ptr(self, v: ir.Value) -> ir.Value:
        """``v`` as an opaque pointer (llvmlite types allocas as typed pointers, and says
        a typed pointer equals ``ptr``, so compare the class)."""
        if type(v.type) is type(PTR):
            return v
        cast = ir.instructions.CastInstr(self.b.block, "bitcast", v, PTR)
        self.b._insert(cast)       # builder.bitcast() would return v unchanged
        return cast

    def gep(self, p: ir.Value, off: int | ir.Value) -> ir.Value:
        """``p + off`` bytes; a constant offset is remembered for the field's alignment."""
        if isinstance(off, int):
            q = self.b.gep(self.ptr(p), [ir.Constant(I64, off)], source_etype=I8)
            q._pyxdp_off = off
            return q
        return self.b.gep(self.ptr(p), [off], source_etype=I8)

    # -- memory -------------------------------------------------------------------------
    def addr_of(self, e: ast.expr) -> tuple[ir.Value, Type, BitField | None]:
        """Address, storage type and bit field of an assignable place."""
        r = self.fl.res(e)
        if isinstance(e, ast.Subscript):
            base, storage, _ = self.addr_of(e.value)
            assert isinstance(storage, ArrayType)
            if r[0] == "vindex":      # a for-range variable, proven inside the array
                i = self.fl.expr_as(r[1], u64)
                off = self.b.mul(i, ir.Constant(I64, storage.elem.size))
                return (self.b.gep(self.ptr(base), [off], source_etype=I8), storage.elem,
                        None)
            idx = r[1]
            return self.gep(base, idx * storage.elem.size), storage.elem, None
        assert isinstance(e, ast.Attribute), e
        base = self.fl.expr(e.value)
        if r[0] == "value":
            return self.ptr(base), r[2], None
        if r[0] == "bits":
            _, off, ft, bf = r
            return self.gep(base, off), ft, bf
        _, off, ft = r
        return self.gep(base, off), ft, None

    def load_field(self, p: ir.Value, storage: Type) -> ir.Value:
        if isinstance(storage, ArrayType):
            return self.b.load(p, typ=ir_type(storage), align=self._array_align(p, storage))
        assert isinstance(storage, IntType)
        v = self.b.load(p, typ=ir.IntType(storage.bits), align=self._align(p, storage))
        return self.b.bswap(v) if storage.be else v

    def store_field(self, p: ir.Value, storage: Type, v: ir.Value) -> None:
        if isinstance(storage, IntType) and storage.be:
            v = self.b.bswap(v)
        if isinstance(storage, StructType):
            raise AssertionError("struct assignment is typed out")
        self.b.store(v, p, align=self._array_align(p, storage) if isinstance(
            storage, ArrayType) else self._align(p, storage))

    def _array_align(self, p: ir.Value, storage: ArrayType) -> int:
        """Arrays in structs and headers: as aligned as their offset allows, at most 4
        (what C assumes for ``struct in6_addr``); unknown places: byte aligned."""
        off = getattr(p, "_pyxdp_off", None)
        if off is None or storage.elem.size != 1:
            return storage.elem.align
        return min(natural_align(off, 8), 4)

    def _align(self, p: ir.Value, storage: Type) -> int:
        off = getattr(p, "_pyxdp_off", None)
        return natural_align(off, storage.size) if off is not None else storage.size

    def load_bits(self, p: ir.Value, storage: IntType, bf: BitField) -> ir.Value:
        v = self.load_field(p, storage)
        if bf.shift:
            v = self.b.lshr(v, ir.Constant(v.type, bf.shift))
        return self.b.and_(v, ir.Constant(v.type, (1 << bf.width) - 1))

    def store_bits(self, p: ir.Value, storage: IntType, bf: BitField, v: ir.Value) -> None:
        old = self.load_field(p, storage)
        mask = ((1 << bf.width) - 1) << bf.shift
        keep = self.b.and_(old, ir.Constant(old.type, ~mask & ((1 << storage.bits) - 1)))
        new = self.b.and_(self.b.shl(v, ir.Constant(v.type, bf.shift)),
                          ir.Constant(v.type, mask))
        self.store_field(p, storage, self.b.or_(keep, new))

    def ctx_load(self, name: str, as_ptr: bool) -> ir.Value:
        off = _CTX_OFFSETS[self.fl.kind][name]
        v = self.b.load(self.gep(self.fl.ctx, off), typ=I32, align=4)
        if not as_ptr:
            return v
        p = self.b.inttoptr(self.b.zext(v, I64), PTR)
        if name == "data":     # lets LLVM drop the None checks of parsed headers
            self.b.call(self.fl.ml.assume(), [self.b.icmp_unsigned("!=", p, NULL)])
        return p

    def barrier(self, v: ir.Value) -> ir.Value:
        """Hide ``v`` from the optimiser (libbpf's ``barrier_var``): stops LLVM from
        narrowing pointer arithmetic to 32 bits, which the verifier prohibits."""
        asm = ir.InlineAsm(ir.FunctionType(v.type, [v.type]), "", "=r,0", side_effect=False)
        return self.b.call(asm, [v])

    def spill(self, v: ir.Value, ty: ir.Type) -> ir.Value:
        slot = self.fl.alloca(ty, zero=False)
        self.b.store(v, slot)
        return self.ptr(slot)

    # -- calls --------------------------------------------------------------------------
    def helper(self, name: str, ret: ir.Type, args: list[ir.Value]) -> ir.Value:
        fnty = ir.FunctionType(ret, [a.type for a in args])
        fp = self.b.inttoptr(ir.Constant(I64, HELPERS[name]), ir.PointerType(fnty))
        return self.b.call(fp, args)

    def call(self, e: ast.Call) -> ir.Value:
        r = self.fl.res(e)
        kind = r[0]
        if kind == "cast":
            return self.fl.expr_as(e.args[0], r[1])
        if kind == "struct_new":
            return self.struct_new(e, r[1])
        if kind == "builtin":
            from pyxdp.compiler.lower_builtins import lower_builtin
            return lower_builtin(self, e, r[1])
        if kind == "ctx":
            return self.ctx_method(e, r[1])
        if kind == "cursor":
            return self.cursor_method(e, r[1], r[2])
        if kind == "map":
            from pyxdp.compiler.lower_maps import lower_map_method
            return lower_map_method(self, e, r[1], r[2])
        if kind == "inline":
            return self.inline(e)
        if kind == "subprog":
            return self.subprog_call(e, r[2])
        if kind == "minmax":
            return self.minmax(e, r[1], r[2])
        raise AssertionError(r)

    def minmax(self, e: ast.Call, name: str, t: IntType) -> ir.Value:
        b = self.b
        vals = [self.fl.expr_as(a, t) for a in e.args]
        if name == "abs":
            v = vals[0]
            if not t.signed:
                return v
            return b.select(b.icmp_signed("<", v, ir.Constant(v.type, 0)), b.neg(v), v)
        out = vals[0]
        for v in vals[1:]:
            less = (b.icmp_signed if t.signed else b.icmp_unsigned)("<", v, out)
            out = b.select(less, v, out) if name == "min" else b.select(less, out, v)
        return out

    def struct_new(self, e: ast.Call, st: StructType) -> ir.Value:
        slot = self.fl.alloca(ir.ArrayType(I8, st.size), st.name, zero=False)
        slot.align = max(st.align, 8)
        p = self.ptr(slot)
        # zero each 8-byte word that a given field does not cover in full (a key built
        # from all its fields needs no zeroing; padding and unnamed fields read as 0)
        covered = bytearray(st.size)
        for k in e.keywords:
            off, ft = st.fields[k.arg]  # type: ignore[index]
            covered[off:off + ft.size] = b"\1" * ft.size
        for w in range(0, st.size, 8):
            n = min(8, st.size - w)
            if not all(covered[w:w + n]):
                zt = ir.IntType(8 * n) if n in (1, 2, 4, 8) else ir.ArrayType(I8, n)
                self.b.store(ir.Constant(zt, 0 if n in (1, 2, 4, 8) else None),
                             self.gep(p, w))
        for k in e.keywords:
            off, ft = st.fields[k.arg]  # type: ignore[index]
            fp = self.gep(p, off)
            self.store_field(fp, ft, self.fl.expr_as(k.value, ft.host if isinstance(
                ft, IntType) else ft))
        return p

    # -- ctx and the cursor -------------------------------------------------------------
    def data_end(self) -> ir.Value:
        return self.ctx_load("data_end", True)

    def checked(self, p: ir.Value, size: int) -> ir.Value:
        """Does ``[p, p + size)`` lie inside the packet? (the check the verifier wants)"""
        last = self.b.gep(p, [ir.Constant(I64, size)], source_etype=I8)
        return self.b.icmp_unsigned("<=", last, self.data_end())

    def bounded(self, base: ir.Value, off: ir.Value | None, size: int) -> ir.Value:
        """A nullable ref to ``size`` bytes at ``base + off`` (off: u64, may be None).

        A variable offset is first bounded by the largest packet offset minus ``size``, so
        that the verifier knows its range, then the end is compared with ``data_end``."""
        b, fl = self.b, self.fl
        good, done = fl.new_block("inb"), fl.new_block("ld")
        fails = []
        p = base
        # the verifier only marks a checked range when offset + size <= MAX_PACKET_OFF
        top = MAX_PACKET_OFF - size
        if off is not None and not (isinstance(off, ir.Constant) and 0 <= off.constant <= top):
            small = fl.new_block("off")
            b.cbranch(b.icmp_unsigned("<=", off, ir.Constant(I64, top)), small, done)
            fails.append(b.block)
            b.position_at_end(small)
            # the verifier knows the bound of this one value only: keep LLVM from
            # reassociating base + (a + b) into (base + a) + b, whose parts are unbounded
            off = self.barrier(off)
        if off is not None:
            p = b.gep(base, [off], source_etype=I8)
        b.cbranch(self.checked(p, size), good, done)
        fails.append(b.block)
        b.position_at_end(good)
        b.branch(done)
        b.position_at_end(done)
        phi = b.phi(PTR)
        phi.add_incoming(p, good)
        for blk in fails:
            phi.add_incoming(NULL, blk)
        return phi

    def ctx_method(self, e: ast.Call, name: str) -> ir.Value:
        fl = self.fl
        if name == "cursor":
            return self.ctx_load("data", True)
        if name == "packet_len":
            # data_end - data as a scalar the optimiser cannot fold into other arithmetic
            # (never a pointer computation on pkt_end, which the verifier prohibits)
            end = self.b.ptrtoint(self.ctx_load("data_end", True), I64)
            start = self.b.ptrtoint(self.ctx_load("data", True), I64)
            return self.b.trunc(self.barrier(self.b.sub(end, start)), I32)
        if name == "buff_len":
            return self.helper("xdp_get_buff_len", I64, [self.ptr(fl.ctx)])
        if name in ("load_bytes", "store_bytes"):
            ref = fl.t(e.args[1])
            assert isinstance(ref, RefType)
            return self.helper("xdp_" + name, I64, [
                self.ptr(fl.ctx), fl.expr_as(e.args[0], u64), self.ptr(fl.expr(e.args[1])),
                ir.Constant(I64, ref.target.size)])
        if name == "load":
            tt = _target(fl.t(e))
            base = None
            for k in e.keywords:
                base = fl.expr(k.value)
            if base is None:
                base = self.ctx_load("data", True)
            off = fl.expr_as(e.args[1], u64)
            return self.bounded(base, off, tt.size)
        delta = fl.expr_as(e.args[0], IntType(32, True))
        return self.helper("xdp_" + name, I64, [self.ptr(fl.ctx), delta])

    def cursor_method(self, e: ast.Call, name: str, var: str) -> ir.Value:
        fl = self.fl
        slot = fl.slot(var)
        pos = self.b.load(slot)
        if name == "offset":
            data = self.ctx_load("data", True)
            diff = self.b.sub(self.b.ptrtoint(pos, I64), self.b.ptrtoint(data, I64))
            return self.b.trunc(self.barrier(diff), I32)
        if name == "skip":
            n = fl.expr_as(e.args[0], u64)
            self.b.store(self.b.gep(pos, [n], inbounds=True, source_etype=I8), slot)
            return ir.Constant(I64, 0)
        if name == "load":
            tt = _target(fl.t(e))
            return self.bounded(pos, fl.expr_as(e.args[1], u64), tt.size)
        # parse, or header: the same without reading a length field
        st = _target(fl.t(e))
        assert isinstance(st, StructType)
        return self.parse(slot, pos, st, fixed=name == "header")

    def parse(self, slot: ir.Value, pos: ir.Value, st: StructType, fixed: bool = False
              ) -> ir.Value:
        b, fl = self.b, self.fl
        good, bad, done = fl.new_block("hdr"), fl.new_block("short"), fl.new_block("parsed")
        b.cbranch(self.checked(pos, st.size), good, bad)
        b.position_at_end(good)
        hdrlen = st.cls._hdrlen_ if st.cls is not None and not fixed else None
        if hdrlen is None:
            b.store(b.gep(pos, [ir.Constant(I64, st.size)], inbounds=True, source_etype=I8),
                    slot)
        else:
            fname, mul, add = hdrlen
            if fname in st.bits:
                bf = st.bits[fname]
                off, ft = st.fields[bf.base]
                assert isinstance(ft, IntType)      # Struct checks a bit field's base
                n = self.load_bits(self.gep(pos, off), ft, bf)
            else:
                off, ft = st.fields[fname]
                n = self.load_field(self.gep(pos, off), ft)
            n = b.zext(n, I64) if n.type.width < 64 else n
            length = b.add(b.mul(n, ir.Constant(I64, mul)), ir.Constant(I64, add))
            fine = fl.new_block("hdrlen")
            b.cbranch(b.icmp_unsigned(">=", length, ir.Constant(I64, st.size)), fine, bad)
            b.position_at_end(fine)
            b.store(b.gep(pos, [length], inbounds=True, source_etype=I8), slot)
        last_good = b.block
        b.branch(done)
        b.position_at_end(bad)
        b.branch(done)
        b.position_at_end(done)
        phi = b.phi(PTR)
        phi.add_incoming(pos, last_good)
        phi.add_incoming(NULL, bad)
        return phi

    # -- inlined helper functions -------------------------------------------------------
    def inline(self, e: ast.Call) -> ir.Value:
        fl = self.fl
        typed = fl.frame.types.inlined[id(e)]
        args = [(fl.expr_value(a), fl.t(a)) for a in e.args]
        caller = fl.frame
        frame = Frame(typed)
        frame.ret_block = fl.new_block(f"ret_{typed.fn.name}")
        if typed.ret is not None and typed.ret is not NONE:
            frame.ret_slot = fl.alloca(ir_type(typed.ret), f"{typed.fn.name}_ret")
        fl.frame = frame
        for (pname, ptype), (v, vt) in zip(typed.params, args):
            self.b.store(fl.coerce(v, vt, ptype), fl.slot(pname))
        saved_loc = self.b.debug_metadata
        fl.block(typed.fn.body)
        if not fl.terminated():
            self.b.branch(frame.ret_block)
        fl.frame = caller
        self.b.position_at_end(frame.ret_block)
        self.b.debug_metadata = saved_loc
        if frame.ret_slot is not None:
            return self.b.load(frame.ret_slot)
        return ir.Constant(I64, 0)


    # -- @subprog functions: bpf-to-bpf calls ------------------------------------------
    def subprog_call(self, e: ast.Call, key: tuple[object, ...]) -> ir.Value:
        fl, b = self.fl, self.b
        typed = fl.frame.types.inlined[id(e)]
        fn = fl.ml.subprog((fl.kind, *key), typed, fl.kind)
        args: list[ir.Value] = [fl.ctx]
        for (_, ptype), a in zip(typed.params, e.args):
            if ptype is CTX:
                continue
            args.append(to_abi(b, fl.coerce(fl.expr_value(a), fl.t(a), ptype), ptype))
        r = b.call(fn, args)
        ret = typed.ret
        if ret is None or ret is VOID or ret is NONE:
            return ir.Constant(I64, 0)
        rt = ir_type(ret)
        return b.trunc(r, rt) if rt.width < 64 else r


def to_abi(b: ir.IRBuilder, v: ir.Value, t: Type) -> ir.Value:
    """A value as a BPF argument/return register: integers widened to 64 bits."""
    if isinstance(t, IntType) and t.bits < 64:
        return b.sext(v, I64) if t.host.signed else b.zext(v, I64)
    if t is BOOL:
        return b.zext(v, I64)
    return v


def from_abi(b: ir.IRBuilder, v: ir.Value, t: Type) -> ir.Value:
    if isinstance(t, IntType) and t.bits < 64:
        return b.trunc(v, ir.IntType(t.bits))
    if t is BOOL:
        return b.trunc(v, ir.IntType(1))
    return v


def _target(t: Type) -> Type:
    assert isinstance(t, RefType)
    return t.target


__all__ = ["CallLower"]
