"""Lowering of map methods to the BPF map helpers."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING, Any

import llvmlite.ir as ir

from pyxdp.abi import MapType
from pyxdp.compiler.lower_fn import I64, PTR, ir_type
from pyxdp.compiler.types import IntType, RefType, Type, u64
from pyxdp.maps import PERCPU_TYPES

if TYPE_CHECKING:
    from pyxdp.compiler.lower_calls import CallLower


def _arg_ptr(cl: CallLower, a: ast.expr, want: Type) -> ir.Value:
    """A pointer to a key or value: refs pass through, integers are spilled to the stack."""
    if isinstance(want, IntType):
        v = cl.fl.expr_as(a, want)
        return cl.spill(v, ir_type(want))
    t = cl.fl.t(a)
    assert isinstance(t, RefType)
    return cl.ptr(cl.fl.expr(a))


def lower_map_method(cl: CallLower, e: ast.Call, decl: Any, name: str) -> ir.Value:
    fl, b = cl.fl, cl.b
    r = fl.res(e)
    if len(r) > 3 and r[3] == "inner":       # an inner map found in a map-in-map
        m = fl.expr(e.func.value)  # type: ignore[attr-defined]
    else:
        m = fl.ml.map_ptr(decl)
    args = list(e.args) + [k.value for k in e.keywords]
    if name == "output" and decl.map_type == MapType.PERF_EVENT_ARRAY:
        # bpf_perf_event_output(ctx, map, flags, data, size) (XDP and tc programs' own
        # flavour; bpf_xdp_output is the tracing programs'): this CPU's ring, the first
        # `sample` bytes of the frame appended (flags bits 32..51)
        ref = fl.t(args[1])
        assert isinstance(ref, RefType)
        flags: ir.Value = ir.Constant(I64, 0xFFFFFFFF)
        if len(args) > 2:
            flags = b.or_(flags, b.shl(fl.expr_as(args[2], u64), ir.Constant(I64, 32)))
        return cl.helper("perf_event_output", I64, [cl.ptr(fl.ctx), m, flags,
                                                    cl.ptr(fl.expr(args[1])),
                                                    ir.Constant(I64, ref.target.size)])
    if name == "output":
        ref = fl.t(args[0])
        assert isinstance(ref, RefType)
        flags = fl.expr_as(args[1], u64) if len(args) > 1 else ir.Constant(I64, 0)
        return cl.helper("ringbuf_output", I64, [m, cl.ptr(fl.expr(args[0])),
                                                 ir.Constant(I64, ref.target.size), flags])
    if name == "redirect":
        flags = fl.expr_as(args[1], u64) if len(args) > 1 else ir.Constant(I64, 0)
        return cl.helper("redirect_map", I64, [m, fl.expr_as(args[0], u64), flags])
    kt, vt = decl.key_type(), decl.value_type()
    if name == "lookup":
        return cl.helper("map_lookup_elem", PTR, [m, _arg_ptr(cl, args[0], kt)])
    if name == "update":
        flags = fl.expr_as(args[2], u64) if len(args) > 2 else ir.Constant(I64, 0)
        return cl.helper("map_update_elem", I64, [m, _arg_ptr(cl, args[0], kt),
                                                  _arg_ptr(cl, args[1], vt), flags])
    if name == "delete":
        return cl.helper("map_delete_elem", I64, [m, _arg_ptr(cl, args[0], kt)])
    assert name == "add" and isinstance(vt, IntType)
    p = cl.helper("map_lookup_elem", PTR, [m, _arg_ptr(cl, args[0], kt)])
    found, done = fl.new_block("found"), fl.new_block("added")
    b.cbranch(b.icmp_unsigned("!=", p, ir.Constant(PTR, None)), found, done)
    b.position_at_end(found)
    n = fl.expr_as(args[1], vt)
    if decl.map_type in PERCPU_TYPES or decl.map_type == MapType.PERCPU_ARRAY:
        old = b.load(p, typ=ir_type(vt), align=vt.size)
        b.store(b.add(old, n), p, align=vt.size)
    else:
        b.atomic_rmw("add", p, n, "seq_cst")
    b.branch(done)
    b.position_at_end(done)
    return ir.Constant(I64, 0)
