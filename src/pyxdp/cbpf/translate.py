"""Classic BPF to eBPF: one XDP program that returns the classic filter's return value.

Register use: ``r6`` the context, ``r9`` the packet start (``ctx->data``), ``w7`` the
accumulator A, ``w8`` the index register X, the stack ``r10 - 4*(i+1)`` the scratch word
``M[i]`` (zeroed first, so the verifier sees them written).  Every operation on A and X is
32-bit (eBPF ALU32 zero-extends, as classic BPF's registers are 32-bit).

Packet loads follow libpcap's ``bpf_filter``: bytes in network order, and a load outside
the packet makes the whole filter return 0.  The translation checks each load against
``ctx->data_end`` (absolute offsets above 0xffff can never be inside a frame: they return
0 at once; ``X + k`` for indirect loads is bounded the same way before it is added to the
packet pointer, which is what the verifier needs).  ``len`` is ``bpf_xdp_get_buff_len``:
the frame's whole length.  Division or modulo by an ``X`` of 0 returns 0, as in libpcap.

Backward jumps (only libpcap's ``protochain`` makes them) are allowed and counted: after
:data:`LOOP_BOUND` of them in one run the filter returns 0, so the verifier sees a bounded
loop.

Refused with :class:`CbpfError` (libpcap's ``bpf_validate`` refuses them too): a jump out
of the program, a scratch index over 15, division by a constant 0, a shift by 32 or more,
unknown opcodes, a program not ending in a return.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyxdp.abi import ProgType
from pyxdp.errors import PyxdpError
from pyxdp.isa import AluOp, Class, Instruction, JmpOp, Mode, Size, Source
from pyxdp.spec import ProgramSpec

MAX_OFF = 0xFFFF
SCRATCH = 16
#: how many backward jumps one run may take in all: libpcap's ``protochain`` walks the
#: IPv6 extension headers with a loop; the kernel needs a bound, and a packet with more
#: headers than this is judged "no match" (as the kernel's own IPv6 walkers stop at 8)
LOOP_BOUND = 16
LOOP_SLOT = -4 * SCRATCH - 8     # a 64-bit slot: the verifier tracks those exactly
HELPER_XDP_GET_BUFF_LEN = 188

# classic BPF opcode fields (linux/filter.h, pcap/bpf.h)
C_LD, C_LDX, C_ST, C_STX, C_ALU, C_JMP, C_RET, C_MISC = range(8)
M_IMM, M_ABS, M_IND, M_MEM, M_LEN, M_MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
S_W, S_H, S_B = 0x00, 0x08, 0x10
SRC_K, SRC_X, RVAL_A = 0x00, 0x08, 0x10
ALU_OPS = {0x00: AluOp.ADD, 0x10: AluOp.SUB, 0x20: AluOp.MUL, 0x30: AluOp.DIV,
           0x40: AluOp.OR, 0x50: AluOp.AND, 0x60: AluOp.LSH, 0x70: AluOp.RSH,
           0x80: AluOp.NEG, 0x90: AluOp.MOD, 0xA0: AluOp.XOR}
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
TAX, TXA = 0x00, 0x80

CTX, A, X, DATA = 6, 7, 8, 9


class CbpfError(PyxdpError, ValueError):
    """A classic BPF program that cannot (or must not) be translated."""


@dataclass(frozen=True)
class CbpfInsn:
    """``struct sock_filter`` / ``struct bpf_insn`` of libpcap: code, jt, jf, k."""

    code: int
    jt: int
    jf: int
    k: int


def _alu32(op: int, dst: int, *, imm: int | None = None, src: int | None = None
           ) -> Instruction:
    if imm is not None:
        return Instruction(Class.ALU | op | Source.K, dst=dst, imm=_s32(imm))
    return Instruction(Class.ALU | op | Source.X, dst=dst, src=src or 0)


def _alu64(op: int, dst: int, *, imm: int | None = None, src: int | None = None
           ) -> Instruction:
    if imm is not None:
        return Instruction(Class.ALU64 | op | Source.K, dst=dst, imm=_s32(imm))
    return Instruction(Class.ALU64 | op | Source.X, dst=dst, src=src or 0)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _ldx(size: int, dst: int, src: int, off: int = 0) -> Instruction:
    return Instruction(Class.LDX | Mode.MEM | size, dst=dst, src=src, off=off)


def _stx(size: int, dst: int, src: int, off: int) -> Instruction:
    return Instruction(Class.STX | Mode.MEM | size, dst=dst, src=src, off=off)


def _st(size: int, dst: int, off: int, imm: int) -> Instruction:
    return Instruction(Class.ST | Mode.MEM | size, dst=dst, off=off, imm=imm)


def _jmp(op: int, dst: int, *, imm: int | None = None, src: int | None = None,
         jmp32: bool = True) -> Instruction:
    cls = Class.JMP32 if jmp32 else Class.JMP
    if imm is not None:
        return Instruction(cls | op | Source.K, dst=dst, imm=_s32(imm))
    return Instruction(cls | op | Source.X, dst=dst, src=src or 0)


def _ja() -> Instruction:
    return Instruction(Class.JMP | JmpOp.JA)


def _exit() -> Instruction:
    return Instruction(Class.JMP | JmpOp.EXIT)


def _be(dst: int, bits: int) -> Instruction:
    return Instruction(Class.ALU | AluOp.END | Source.X, dst=dst, imm=bits)   # to big endian


class _Emitter:
    def __init__(self) -> None:
        self.insns: list[tuple[Instruction, object | None]] = []
        self.labels: dict[object, int] = {}

    def emit(self, insn: Instruction, target: object | None = None) -> None:
        self.insns.append((insn, target))

    def label(self, name: object) -> None:
        self.labels[name] = len(self.insns)

    def resolve(self) -> list[Instruction]:
        out = []
        for pos, (insn, target) in enumerate(self.insns):
            if target is not None:
                rel = self.labels[target] - (pos + 1)
                if not -(1 << 15) <= rel < 1 << 15:
                    raise CbpfError("the translated filter is too long for 16-bit jumps")
                insn = insn.with_branch_offset(rel)
            out.append(insn)
        return out


SIZES = {S_W: (Size.W, 4, 32), S_H: (Size.H, 2, 16), S_B: (Size.B, 1, 0)}


def _load_packet(e: _Emitter, dst: int, size_field: int, k: int, indirect: bool) -> None:
    """``dst = P[k:k+n]`` (or ``P[X+k:...]``) in network order, 0 from the filter if out
    of the packet."""
    size, n, swap = SIZES[size_field]
    if k > MAX_OFF:
        e.emit(_ja(), "ret0")
        return
    if indirect:
        e.emit(_jmp(JmpOp.JGT, X, imm=MAX_OFF), "ret0")
        e.emit(_alu64(AluOp.MOV, 2, src=X))             # zero-extended X
        e.emit(_alu64(AluOp.ADD, 2, imm=k))
        e.emit(_jmp(JmpOp.JGT, 2, imm=MAX_OFF, jmp32=False), "ret0")
        e.emit(_alu64(AluOp.MOV, 3, src=DATA))
        e.emit(_alu64(AluOp.ADD, 3, src=2))             # packet + bounded offset
    else:
        e.emit(_alu64(AluOp.MOV, 3, src=DATA))
        e.emit(_alu64(AluOp.ADD, 3, imm=k))
    e.emit(_alu64(AluOp.MOV, 4, src=3))
    e.emit(_alu64(AluOp.ADD, 4, imm=n))
    e.emit(_ldx(Size.W, 5, CTX, 4))                     # ctx->data_end
    e.emit(_jmp(JmpOp.JGT, 4, src=5, jmp32=False), "ret0")
    e.emit(_ldx(size, dst, 3, 0))
    if swap:
        e.emit(_be(dst, swap))


def _scratch(k: int) -> int:
    if not 0 <= k < SCRATCH:
        raise CbpfError(f"scratch memory index {k} (M[0] to M[15] exist)")
    return -4 * (k + 1)


def translate(prog: list[CbpfInsn]) -> list[Instruction]:
    """The eBPF instructions of an XDP program equivalent to ``prog``."""
    if not prog:
        raise CbpfError("empty classic BPF program")
    if len(prog) > 4096:
        raise CbpfError(f"{len(prog)} instructions: classic BPF allows 4096")
    last = prog[-1].code & 0x07
    if last not in (C_RET, C_JMP):
        raise CbpfError("a classic BPF program must end in a return")
    e = _Emitter()
    e.emit(_alu64(AluOp.MOV, CTX, src=1))
    e.emit(_ldx(Size.W, DATA, CTX, 0))                  # ctx->data
    e.emit(_alu32(AluOp.MOV, A, imm=0))
    e.emit(_alu32(AluOp.MOV, X, imm=0))
    used = {i.k for i in prog if (i.code & 0x07) in (C_ST, C_STX)
            or ((i.code & 0x07) in (C_LD, C_LDX) and (i.code & 0xE0) == M_MEM)}
    for k in sorted(used):
        e.emit(_st(Size.W, 10, _scratch(k), 0))
    loops = any((i.code & 0x07) == C_JMP and (i.code & 0xF0) == JA and i.k & 0x80000000
                for i in prog)
    if loops:
        e.emit(_st(Size.DW, 10, LOOP_SLOT, LOOP_BOUND))
    for i, ins in enumerate(prog):
        e.label(i)
        cls, code, k = ins.code & 0x07, ins.code, ins.k & 0xFFFFFFFF

        def target(off: int, i: int = i) -> int:
            t = i + 1 + off
            if not 0 <= t < len(prog):
                raise CbpfError(f"instruction {i}: jump outside the program")
            return t

        if cls in (C_LD, C_LDX):
            dst = A if cls == C_LD else X
            mode, size_field = code & 0xE0, code & 0x18
            if mode == M_IMM:
                e.emit(_alu32(AluOp.MOV, dst, imm=k))
            elif mode == M_MEM:
                e.emit(_ldx(Size.W, dst, 10, _scratch(k)))
            elif mode == M_LEN:
                e.emit(_alu64(AluOp.MOV, 1, src=CTX))
                e.emit(Instruction(Class.JMP | JmpOp.CALL, imm=HELPER_XDP_GET_BUFF_LEN))
                e.emit(_alu32(AluOp.MOV, dst, src=0))
            elif mode in (M_ABS, M_IND) and cls == C_LD and size_field in SIZES:
                _load_packet(e, A, size_field, k, mode == M_IND)
            elif mode == M_MSH and cls == C_LDX and size_field == S_B:
                _load_packet(e, X, S_B, k, False)
                e.emit(_alu32(AluOp.AND, X, imm=0xF))
                e.emit(_alu32(AluOp.LSH, X, imm=2))
            else:
                raise CbpfError(f"instruction {i}: unknown load {code:#06x}")
        elif cls in (C_ST, C_STX):
            e.emit(_stx(Size.W, 10, A if cls == C_ST else X, _scratch(k)))
        elif cls == C_ALU:
            op = code & 0xF0
            if op not in ALU_OPS:
                raise CbpfError(f"instruction {i}: unknown ALU operation {code:#06x}")
            eop = ALU_OPS[op]
            if eop == AluOp.NEG:
                e.emit(Instruction(Class.ALU | AluOp.NEG, dst=A))
            elif code & SRC_X:
                if eop in (AluOp.DIV, AluOp.MOD):
                    e.emit(_jmp(JmpOp.JEQ, X, imm=0), "ret0")
                e.emit(_alu32(eop, A, src=X))
            else:
                if eop in (AluOp.DIV, AluOp.MOD) and k == 0:
                    raise CbpfError(f"instruction {i}: division by the constant 0")
                if eop in (AluOp.LSH, AluOp.RSH) and k >= 32:
                    raise CbpfError(f"instruction {i}: shift by {k}")
                e.emit(_alu32(eop, A, imm=k))
        elif cls == C_JMP:
            op = code & 0xF0
            if op == JA:
                off = _s32(k)
                if off < 0:            # a loop (protochain): count it
                    e.emit(_ldx(Size.DW, 1, 10, LOOP_SLOT))
                    e.emit(_jmp(JmpOp.JEQ, 1, imm=0, jmp32=False), "ret0")
                    e.emit(_alu64(AluOp.SUB, 1, imm=1))
                    e.emit(_stx(Size.DW, 10, 1, LOOP_SLOT))
                e.emit(_ja(), target(off))
                continue
            ops = {JEQ: JmpOp.JEQ, JGT: JmpOp.JGT, JGE: JmpOp.JGE, JSET: JmpOp.JSET}
            if op not in ops:
                raise CbpfError(f"instruction {i}: unknown jump {code:#06x}")
            t, f = target(ins.jt), target(ins.jf)
            if code & SRC_X:
                e.emit(_jmp(ops[op], A, src=X), t)
            else:
                e.emit(_jmp(ops[op], A, imm=k), t)
            if f != i + 1:
                e.emit(_ja(), f)
        elif cls == C_RET:
            rv = code & 0x18
            if rv == RVAL_A:
                e.emit(_alu32(AluOp.MOV, 0, src=A))
            elif rv == SRC_K:
                e.emit(_alu32(AluOp.MOV, 0, imm=k))
            else:
                raise CbpfError(f"instruction {i}: unknown return {code:#06x}")
            e.emit(_exit())
        elif cls == C_MISC:
            op = code & 0xF8
            if op == TAX:
                e.emit(_alu32(AluOp.MOV, X, src=A))
            elif op == TXA:
                e.emit(_alu32(AluOp.MOV, A, src=X))
            else:
                raise CbpfError(f"instruction {i}: unknown misc operation {code:#06x}")
    if any(t == "ret0" for _, t in e.insns):      # the verifier refuses unreachable code
        e.label("ret0")
        e.emit(_alu32(AluOp.MOV, 0, imm=0))
        e.emit(_exit())
    return e.resolve()


def translate_spec(prog: list[CbpfInsn], name: str = "cbpf_filter") -> ProgramSpec:
    """:func:`translate` as an XDP :class:`~pyxdp.spec.ProgramSpec`."""
    return ProgramSpec(name=name, type=ProgType.XDP, instructions=translate(prog),
                       section="xdp")


__all__ = ["CbpfError", "CbpfInsn", "translate", "translate_spec"]
