"""Every instruction family in both syntaxes, against hand-checked encodings.

Each row is (uBPF text, LLVM text, encoding).  The encodings were checked against the ISA
(RFC 9669) and, for the forms LLVM 14 knows, against ``llvm-mc -show-encoding``.  Both
texts must assemble to the bytes, and the disassembler must print exactly these texts.
"""

from __future__ import annotations

import pytest

from pyxdp.asm import assemble, assemble_bytes, format_insn
from pyxdp.isa import decode

ROWS: list[tuple[str, str, str]] = [
    # ALU64 / ALU, immediate and register
    ("add %r1, 5", "r1 += 5", "0701000005000000"),
    ("add32 %r1, -1", "w1 += -1", "04010000ffffffff"),
    ("sub %r1, %r2", "r1 -= r2", "1f21000000000000"),
    ("mul32 %r3, %r4", "w3 *= w4", "2c43000000000000"),
    ("div %r1, 3", "r1 /= 3", "3701000003000000"),
    ("sdiv %r1, %r2", "r1 s/= r2", "3f21010000000000"),
    ("sdiv32 %r1, -3", "w1 s/= -3", "34010100fdffffff"),
    ("or %r0, 64", "r0 |= 64", "4700000040000000"),
    ("and32 %r0, %r9", "w0 &= w9", "5c90000000000000"),
    ("lsh %r1, 63", "r1 <<= 63", "670100003f000000"),
    ("rsh32 %r1, %r2", "w1 >>= w2", "7c21000000000000"),
    ("mod %r1, %r3", "r1 %= r3", "9f31000000000000"),
    ("smod32 %r1, 7", "w1 s%= 7", "9401010007000000"),
    ("xor %r1, -1", "r1 ^= -1", "a7010000ffffffff"),
    ("mov %r0, -2147483648", "r0 = -2147483648", "b700000000000080"),
    ("mov32 %r1, %r2", "w1 = w2", "bc21000000000000"),
    ("arsh %r2, 56", "r2 s>>= 56", "c702000038000000"),
    ("arsh32 %r1, %r2", "w1 s>>= w2", "cc21000000000000"),
    ("neg %r1", "r1 = -r1", "8701000000000000"),
    ("neg32 %r0", "w0 = -w0", "8400000000000000"),
    ("movsx864 %r1, %r2", "r1 = (s8)r2", "bf21080000000000"),
    ("movsx1632 %r1, %r2", "w1 = (s16)w2", "bc21100000000000"),
    ("movsx3264 %r0, %r1", "r0 = (s32)r1", "bf10200000000000"),
    # byte swaps
    ("be16 %r9", "r9 = be16 r9", "dc09000010000000"),
    ("be64 %r1", "r1 = be64 r1", "dc01000040000000"),
    ("le32 %r0", "r0 = le32 r0", "d400000020000000"),
    ("bswap16 %r1", "r1 = bswap16 r1", "d701000010000000"),
    ("bswap64 %r1", "r1 = bswap64 r1", "d701000040000000"),
    # loads and stores
    ("ldxw %r2, [%r1+4]", "r2 = *(u32 *)(r1 + 4)", "6112040000000000"),
    ("ldxdw %r0, [%r10-8]", "r0 = *(u64 *)(r10 - 8)", "79a0f8ff00000000"),
    ("ldxb %r1, [%r2]", "r1 = *(u8 *)(r2 + 0)", "7121000000000000"),
    ("ldxh %r0, [%r1+12]", "r0 = *(u16 *)(r1 + 12)", "69100c0000000000"),
    ("ldxsb %r1, [%r2+4]", "r1 = *(s8 *)(r2 + 4)", "9121040000000000"),
    ("ldxsh %r1, [%r2+4]", "r1 = *(s16 *)(r2 + 4)", "8921040000000000"),
    ("ldxsw %r1, [%r2-32768]", "r1 = *(s32 *)(r2 - 32768)", "8121008000000000"),
    ("stb [%r10-8], -1", "*(u8 *)(r10 - 8) = -1", "720af8ffffffffff"),
    ("sth [%r1+2], 7", "*(u16 *)(r1 + 2) = 7", "6a01020007000000"),
    ("stw [%r10-8], 5", "*(u32 *)(r10 - 8) = 5", "620af8ff05000000"),
    ("stdw [%r10-8], 5", "*(u64 *)(r10 - 8) = 5", "7a0af8ff05000000"),
    ("stxb [%r10-8], %r1", "*(u8 *)(r10 - 8) = r1", "731af8ff00000000"),
    ("stxdw [%r8+16], %r9", "*(u64 *)(r8 + 16) = r9", "7b98100000000000"),
    # atomics
    ("lock add [%r8], %r2", "lock *(u64 *)(r8 + 0) += r2", "db28000000000000"),
    ("lock xor32 [%r8], %r4", "lock *(u32 *)(r8 + 0) ^= w4", "c3480000a0000000"),
    ("lock or [%r1+4], %r2", "lock *(u64 *)(r1 + 4) |= r2", "db21040040000000"),
    ("lock and32 [%r2+8], %r1", "lock *(u32 *)(r2 + 8) &= w1", "c312080050000000"),
    ("lock fetch add [%r8], %r2", "r2 = atomic_fetch_add((u64 *)(r8 + 0), r2)",
     "db28000001000000"),
    ("lock fetch or32 [%r8], %r3", "w3 = atomic_fetch_or((u32 *)(r8 + 0), w3)",
     "c338000041000000"),
    ("lock fetch and [%r1+4], %r2", "r2 = atomic_fetch_and((u64 *)(r1 + 4), r2)",
     "db21040051000000"),
    ("lock fetch xor32 [%r1-4], %r2", "w2 = atomic_fetch_xor((u32 *)(r1 - 4), w2)",
     "c321fcffa1000000"),
    ("lock xchg [%r8], %r4", "r4 = xchg_64(r8 + 0, r4)", "db480000e1000000"),
    ("lock xchg32 [%r8+8], %r4", "w4 = xchg32_32(r8 + 8, w4)", "c3480800e1000000"),
    ("lock cmpxchg [%r8], %r2", "r0 = cmpxchg_64(r8 + 0, r0, r2)", "db280000f1000000"),
    ("lock cmpxchg32 [%r8], %r3", "w0 = cmpxchg32_32(r8 + 0, w0, w3)", "c3380000f1000000"),
    # 64-bit immediates and pseudo sources
    ("lddw %r0, 0x1122334455667788", "r0 = 1234605616436508552 ll",
     "1800000088776655" "0000000044332211"),
    ("lddw %r0, 0xfffffffffffffffe", "r0 = -2 ll", "18000000feffffff" "00000000ffffffff"),
    ("lddw %r1, 0x5, src=1", "r1 = map[id:5]", "1811000005000000" "0000000000000000"),
    ("lddw %r1, 0x800000005, src=2", "r1 = map[id:5][0]+8",
     "1821000005000000" "0000000008000000"),
    ("lddw %r2, 0x7, src=4", "ld_pseudo r2, 4, 7", "1842000007000000" "0000000000000000"),
    # legacy packet access
    ("ldabsb 4", "r0 = *(u8 *)skb[4]", "3000000004000000"),
    ("ldindh %r1, -2", "r0 = *(u16 *)skb[r1 - 2]", "48100000feffffff"),
    # jumps
    ("ja +3", "goto +3", "0500030000000000"),
    ("ja -1", "goto -1", "0500ffff00000000"),
    ("ja32 +70000", "gotol +70000", "0600000070110100"),
    ("jeq %r1, 0, +1", "if r1 == 0 goto +1", "1501010000000000"),
    ("jgt %r1, %r2, +92", "if r1 > r2 goto +92", "2d215c0000000000"),
    ("jge32 %r1, 5, -2", "if w1 >= 5 goto -2", "3601feff05000000"),
    ("jset %r1, 4, +1", "if r1 & 4 goto +1", "4501010004000000"),
    ("jne32 %r1, %r2, +0", "if w1 != w2 goto +0", "5e21000000000000"),
    ("jsgt %r1, -1, +2", "if r1 s> -1 goto +2", "65010200ffffffff"),
    ("jsge %r1, %r2, +0", "if r1 s>= r2 goto +0", "7d21000000000000"),
    ("jlt %r1, 2147483647, +0", "if r1 < 2147483647 goto +0", "a5010000ffffff7f"),
    ("jle %r1, -1, +0", "if r1 <= -1 goto +0", "b5010000ffffffff"),
    ("jslt32 %r6, %r3, +1", "if w6 s< w3 goto +1", "ce36010000000000"),
    ("jsle32 %r1, -5, +2", "if w1 s<= -5 goto +2", "d6010200fbffffff"),
    # calls and exit
    ("call 1", "call 1", "8500000001000000"),
    ("call local +5", "call pc+5", "8510000005000000"),
    ("call local -3", "call pc-3", "85100000fdffffff"),
    ("call runtime 1234", "call kfunc 1234", "85200000d2040000"),
    ("call %r2", "callx r2", "8d02000000000000"),
    ("exit", "exit", "9500000000000000"),
]


@pytest.mark.parametrize(("ubpf", "llvm", "hexcode"), ROWS, ids=[r[0] for r in ROWS])
def test_family(ubpf: str, llvm: str, hexcode: str) -> None:
    code = bytes.fromhex(hexcode)
    assert assemble_bytes(ubpf, "ubpf") == code
    assert assemble_bytes(llvm, "llvm") == code
    assert assemble_bytes(ubpf) == code  # auto-detection picks the right syntax
    assert assemble_bytes(llvm) == code
    (insn,) = decode(code)
    assert format_insn(insn, "ubpf") == ubpf
    assert format_insn(insn, "llvm") == llvm


@pytest.mark.parametrize(("text", "hexcode"), [
    # hex immediates above INT32_MAX are reinterpreted as int32 (FORMAT.md §1.3)
    ("jeq %r1, 0x80000000, +1", "1501010000000080"),
    ("mov32 %r0, 0xffffffff", "b4000000ffffffff"),
    ("lddw %r0, 2147483648", "1800000000000080" "0000000000000000"),
    ("lddw %r0, -1", "18000000ffffffff" "00000000ffffffff"),
    ("lddw %r0, 0xFFFFFFFF80000000", "1800000000000080" "00000000ffffffff"),
    ("ldxh %r0, [%r1+0xfffe]", "6910feff00000000"),  # hex offsets wrap to int16
    ("ldxh %r0, [%r1-0x2]", "6910feff00000000"),
    ("swap32 %r3", "d703000020000000"),
    ("add64 %r1, 2", "0701000002000000"),
    ("neg64 %r1", "8701000000000000"),
    ("mov %r11, 1", "b70b000001000000"),  # r11..r15 assemble (for negative tests)
    (".insn 0x07, 0, 0, 1, 1", "0700010001000000"),
])
def test_ubpf_number_rules(text: str, hexcode: str) -> None:
    assert assemble_bytes(text, "ubpf") == bytes.fromhex(hexcode)


@pytest.mark.parametrize(("text", "hexcode"), [
    ("w0 = 0x80000000", "b400000000000080"),
    ("r0 = 0xffffffff", "b7000000ffffffff"),  # llvm-mc prints this as r0 = -1
    ("r0 = 4294967295 ll", "18000000ffffffff" "0000000000000000"),
    ("w1 = *(u8 *)(r10 - 8)", "71a1f8ff00000000"),  # LLVM alu32 spelling of loads/stores
    ("*(u8 *)(r10 - 8) = w1", "731af8ff00000000"),
    ("r0 = *(u8 *)skb[r1]", "5010000000000000"),
    ("call bpf_map_lookup_elem", "8500000001000000"),
    ("call map_lookup_elem", "8500000001000000"),
    ("call bpf_map_lookup_elem#84208", "8500000001000000"),  # bpftool: name wins
    ("call unknown_fn#7", "8500000007000000"),
    ("call r3", "8d03000000000000"),
    ("r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)", "db21000001000000"),
    ("r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)", "db210000f1000000"),
    ("w3 = atomic_xchg((u32 *)(r1 +4), w3)", "c3310400e1000000"),
    ("if r3 > r2 goto pc+8", "2d23080000000000"),
    ("gotol pc-2", "06000000feffffff"),
    ("r0 = 0x10", "b700000010000000"),
    (".insn 0x07, 0, 0, 1, 1 ; raw", "0700010001000000"),
])
def test_llvm_spellings(text: str, hexcode: str) -> None:
    assert assemble_bytes(text, "llvm") == bytes.fromhex(hexcode)


def test_lddw_counts_two_slots_for_labels_and_offsets() -> None:
    text = "ja out\nlddw %r0, 1\nout:\nexit\n"
    assert assemble(text)[0].off == 2
    llvm = "goto out\nr0 = 1 ll\nout:\nexit\n"
    assert assemble(llvm)[0].off == 2


def test_implicit_exit_label_and_local_call_label() -> None:
    insns = assemble("jeq %r1, 0, exit\ncall local f\nexit\nf:\nmov %r0, 1\nexit\n", "ubpf")
    assert insns[0].off == 1 and insns[1].imm == 1 and insns[1].src == 1


def test_label_on_same_line_as_instruction() -> None:
    assert assemble("top: ja top", "ubpf")[0].off == -1
    assert assemble("top: goto top", "llvm")[0].off == -1
