"""Lowering of the dialect's builtin functions: BPF helpers and checksum arithmetic."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

import llvmlite.ir as ir

from pyxdp.compiler.lower_fn import I8, I32, I64, NULL
from pyxdp.compiler.types import NONE, IntType, LitType, RefType, StructType, u16, u32, u64

if TYPE_CHECKING:
    from pyxdp.compiler.lower_calls import CallLower


def _fold16(cl: CallLower, v: ir.Value, rounds: int = 4) -> ir.Value:
    """Fold a one's complement sum into 16 bits (end-around carry)."""
    b = cl.b
    mask = ir.Constant(I64, 0xFFFF)
    for _ in range(rounds):
        v = b.add(b.and_(v, mask), b.lshr(v, ir.Constant(I64, 16)))
    return v


def _ipv4_options(cl: CallLower, base: ir.Value, st: StructType, total: ir.Value
                  ) -> ir.Value:
    """Add the option words of a packet's IPv4 header (IHL > 5) to ``total``: up to 20
    words, each read only when IHL covers it and it is inside the packet (a constant
    offset from the header, which the verifier can check)."""
    b, fl = cl.b, cl.fl
    bf = st.bits["ihl"]
    off, ft = st.fields[bf.base]
    assert isinstance(ft, IntType)
    ihl = b.zext(cl.load_bits(cl.gep(base, off), ft, bf), I64)
    words = b.mul(ihl, ir.Constant(I64, 2))             # 16-bit words in the header
    for j in range(10, 30):
        # two branches, not one on an and: the verifier learns a packet range only from
        # a jump on the pointer comparison itself
        chk, take, done = fl.new_block("opt"), fl.new_block("optw"), fl.new_block("optd")
        word = cl.gep(base, 2 * j)
        here = b.block
        b.cbranch(b.icmp_unsigned("<", ir.Constant(I64, j), words), chk, done)
        b.position_at_end(chk)
        b.cbranch(cl.checked(word, 2), take, done)
        b.position_at_end(take)
        added = b.add(total, b.zext(b.load(word, typ=ir.IntType(16), align=2), I64))
        b.branch(done)
        b.position_at_end(done)
        phi = b.phi(I64)
        phi.add_incoming(total, here)
        phi.add_incoming(total, chk)
        phi.add_incoming(added, take)
        total = phi
    return total


def _swap16(cl: CallLower, v: ir.Value) -> ir.Value:
    """A one's complement partial sum (u64) in the other byte order: folded to 16 bits,
    byte-swapped, widened again (the same sum, modulo 0xFFFF, of the swapped words)."""
    b = cl.b
    folded = b.trunc(_fold16(cl, v), ir.IntType(16))
    return b.zext(b.bswap(folded), I64)


def _not16(cl: CallLower, v: ir.Value) -> ir.Value:
    return cl.b.and_(cl.b.not_(v), ir.Constant(v.type, 0xFFFF))


def lower_builtin(cl: CallLower, e: ast.Call, name: str) -> ir.Value:
    fl, b = cl.fl, cl.b
    args = list(e.args) + [k.value for k in e.keywords]
    if name in ("ktime_get_ns", "ktime_get_coarse_ns", "get_prandom_u32",
                "get_smp_processor_id"):
        v = cl.helper(name, I64, [])
        return v if name.startswith("ktime") else b.trunc(v, I32)
    if name.startswith("bswap"):
        t = {"bswap16": u16, "bswap32": u32, "bswap64": u64}[name]
        return b.bswap(fl.expr_as(args[0], t))
    if name == "redirect":
        flags = fl.expr_as(args[1], u64) if len(args) > 1 else ir.Constant(I64, 0)
        return cl.helper("redirect", I64, [fl.expr_as(args[0], u64), flags])
    if name == "csum_fold":
        return b.trunc(_not16(cl, _fold16(cl, fl.expr_as(args[0], u64))), ir.IntType(16))
    if name in ("csum_replace2", "csum_replace4"):
        check, old, new = (fl.expr_as(a, u64) for a in args)
        total = b.add(_not16(cl, check), _words(cl, b.not_(old), name))
        total = b.add(total, _words(cl, new, name))
        return b.trunc(_not16(cl, _fold16(cl, total)), ir.IntType(16))
    if name == "ipv4_csum":
        base = fl.expr(args[0])
        total = ir.Constant(I64, 0)
        for i in range(10):
            w = b.load(cl.gep(base, 2 * i), typ=ir.IntType(16), align=2)
            total = b.add(total, b.zext(w, I64))
        ref = fl.t(args[0])
        var = fl.res(e)[2]
        ft = fl.frame.types
        pushed = var is not None and var in ft.header_vars and var not in ft.other_ref_vars
        if isinstance(ref, RefType) and ref.space == "pkt" and isinstance(
                ref.target, StructType) and "ihl" in ref.target.bits and not pushed:
            total = _ipv4_options(cl, base, ref.target, total)
        folded = b.trunc(_not16(cl, _fold16(cl, total, 2)), ir.IntType(16))
        return b.bswap(folded)     # the sum was over network-order words
    if name == "trace_printk":
        fmt = args[0].value.encode() + b"\0"  # type: ignore[attr-defined]
        ty = ir.ArrayType(I8, len(fmt))
        slot = fl.alloca(ty, "fmt", zero=False)
        b.store(ir.Constant(ty, bytearray(fmt)), slot)
        vals = [fl.expr_as(a, u64) for a in args[1:]]
        return cl.helper("trace_printk", I64, [cl.ptr(slot), ir.Constant(I64, len(fmt)), *vals])
    if name == "load":
        tt = fl.res(e)[2]                 # the storage type: be32 loads are swapped
        assert isinstance(tt, IntType)
        v = b.load(fl.expr(args[1]), typ=ir.IntType(tt.bits), align=1)
        return b.bswap(v) if tt.be else v
    if name == "store":
        tt = fl.res(e)[2]
        v = fl.expr_as(args[2], tt.host)
        b.store(b.bswap(v) if tt.be else v, fl.expr(args[1]), align=1)
        return ir.Constant(I64, 0)
    if name == "atomic_add":
        ptr, storage, _ = cl.addr_of(args[0])
        assert isinstance(storage, IntType)
        b.atomic_rmw("add", ptr, fl.expr_as(args[1], storage), "seq_cst")
        return ir.Constant(I64, 0)
    if name == "csum_diff":
        ptrs: list[ir.Value] = []
        for a in args[:2]:
            at = fl.t(a)
            if at is NONE or isinstance(at, LitType):     # None or 0: no data
                ptrs += [NULL, ir.Constant(I64, 0)]
            else:
                assert isinstance(at, RefType)
                ptrs += [cl.ptr(fl.expr(a)), ir.Constant(I64, at.target.size)]
        # one byte-order rule for every checksum value in the dialect: host order.  The
        # helper sums memory-order words, so its seed goes in swapped and its sum comes
        # out swapped (a one's complement sum folded to 16 bits swaps with its words), and
        # csum_fold(csum_diff(...)) is then what a be16 checksum field store expects.
        seed = _swap16(cl, fl.expr_as(args[2], u64))
        raw = cl.helper("csum_diff", I64, [*ptrs, seed])
        return _swap16(cl, raw)
    if name == "fib_lookup":
        return cl.helper("fib_lookup", I64, [cl.ptr(fl.ctx), cl.ptr(fl.expr(args[1])),
                                             ir.Constant(I64, 64), fl.expr_as(args[2], u64)])
    if name == "tail_call":
        m = fl.ml.map_ptr(fl.res(args[1])[1])
        return cl.helper("tail_call", I64, [cl.ptr(fl.ctx), m, fl.expr_as(args[2], u64)])
    raise AssertionError(name)


def _words(cl: CallLower, v: ir.Value, name: str) -> ir.Value:
    """The 16-bit words of a 16- or 32-bit value, summed (as u64)."""
    b = cl.b
    lo = b.and_(v, ir.Constant(I64, 0xFFFF))
    if name == "csum_replace2":
        return lo
    return b.add(lo, b.and_(b.lshr(v, ir.Constant(I64, 16)), ir.Constant(I64, 0xFFFF)))

