"""CO-RE: rewrite field offsets, sizes, existence checks, type ids and enum values in a
program so that it matches the running kernel's types (libbpf's ``relo_core.c`` semantics).

A relocation names a *local* root type (as the program was compiled against it) and an
access path ``"0:1:2"``.  Candidate *target* types share kind and essential name (the part
before ``___``); each is walked member by member, by member *name*, and all that match must
agree.  Resolution is pure: it needs two :class:`Btf` objects, no kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyxdp.btf._btf import Btf
from pyxdp.btf._ext import CoreRelo, CoreReloKind
from pyxdp.btf._types import Kind, essential_name
from pyxdp.errors import BtfError
from pyxdp.isa import LD_IMM64, Class, Instruction, Mode, Size, slot_offsets

POISON_HELPER = 0xBAD2310   # an invalid helper: the verifier rejects it only if reached

_FIELD = frozenset({CoreReloKind.FIELD_BYTE_OFFSET, CoreReloKind.FIELD_BYTE_SIZE,
                    CoreReloKind.FIELD_EXISTS, CoreReloKind.FIELD_SIGNED,
                    CoreReloKind.FIELD_LSHIFT_U64, CoreReloKind.FIELD_RSHIFT_U64})
_TYPE = frozenset({CoreReloKind.TYPE_ID_LOCAL, CoreReloKind.TYPE_ID_TARGET,
                   CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_SIZE, CoreReloKind.TYPE_MATCHES})
_EXISTS = frozenset({CoreReloKind.FIELD_EXISTS, CoreReloKind.TYPE_EXISTS,
                     CoreReloKind.TYPE_MATCHES, CoreReloKind.ENUMVAL_EXISTS})
_COMPOSITE = (Kind.STRUCT, Kind.UNION)
_ENUMS = (Kind.ENUM, Kind.ENUM64)
_DEPTH = 32


@dataclass
class _Spec:
    """Where an access path leads in one BTF."""

    root: int
    bit_offset: int = 0
    field_type: int = 0
    bitfield_size: int = 0
    steps: tuple[tuple[str, int], ...] = ()   # ("m", member-name-index) / ("a", index)
    names: tuple[str, ...] = ()
    enum_value: int = 0


@dataclass(frozen=True)
class CoreResult:
    """The outcome of one relocation, for inspection and tests."""

    relo: CoreRelo
    insn_index: int
    orig: int
    new: int
    poison: bool = False


def _kinds_compat(a: Kind, b: Kind) -> bool:
    return a == b or (a in _ENUMS and b in _ENUMS)


def _names_match(a: str, b: str) -> bool:
    return essential_name(a) == essential_name(b)


def _fields_compat(lb: Btf, lid: int, tb: Btf, tid: int, depth: int = 0) -> bool:
    if depth > _DEPTH:
        return False
    lt, tt = lb.resolve(lid), tb.resolve(tid)
    if lt.kind in _COMPOSITE and tt.kind in _COMPOSITE:
        return True
    if not _kinds_compat(lt.kind, tt.kind):
        return False
    if lt.kind in (Kind.PTR, Kind.FLOAT):
        return True
    if lt.kind in (Kind.FWD, Kind.ENUM, Kind.ENUM64):
        return not lt.name or _names_match(lt.name, tt.name)
    if lt.kind == Kind.INT:
        return lt.int_offset == 0 and tt.int_offset == 0
    if lt.kind == Kind.ARRAY:
        return _fields_compat(lb, lt.elem_type, tb, tt.elem_type, depth + 1)
    return False


def _types_compat(lb: Btf, lid: int, tb: Btf, tid: int, depth: int = 0) -> bool:
    if depth > _DEPTH:
        return False
    lt, tt = lb.resolve(lid), tb.resolve(tid)
    if not _kinds_compat(lt.kind, tt.kind):
        return False
    k = lt.kind
    if k in (Kind.UNKN, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD, Kind.FLOAT):
        return True
    if k == Kind.INT:
        return lt.int_offset == 0 and tt.int_offset == 0
    if k == Kind.PTR:
        return _types_compat(lb, lt.type, tb, tt.type, depth + 1)
    if k == Kind.ARRAY:
        return _types_compat(lb, lt.elem_type, tb, tt.elem_type, depth + 1)
    if k == Kind.FUNC_PROTO:
        if len(lt.params) != len(tt.params):
            return False
        return all(_types_compat(lb, a.type, tb, b.type, depth + 1)
                   for a, b in zip(lt.params, tt.params)) and _types_compat(
            lb, lt.type, tb, tt.type, depth + 1)
    return False


def types_compatible(local: Btf, local_id: int, target: Btf, target_id: int) -> bool:
    """libbpf's ``bpf_core_types_are_compat`` (kfunc prototypes, typed ``__ksym``s)."""
    return _types_compat(local, local_id, target, target_id)


def _parse_access(access: str) -> list[int]:
    try:
        out = [int(x) for x in access.split(":")]
    except ValueError:
        raise BtfError(f"bad CO-RE access string {access!r}") from None
    if not out or any(i < 0 for i in out) or len(out) > 256:
        raise BtfError(f"bad CO-RE access string {access!r}")
    return out


def _local_spec(btf: Btf, relo: CoreRelo) -> _Spec:
    """Walk the access path through the program's own BTF."""
    acc = _parse_access(relo.access)
    root = relo.type_id
    if relo.kind in _TYPE:
        return _Spec(root, field_type=root)
    if relo.kind in (CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE):
        t = btf.resolve(root)
        if t.kind not in _ENUMS or acc[0] >= len(t.values):
            raise BtfError(f"CO-RE enum relocation {relo.access!r} on non-enum type {root}")
        v = t.values[acc[0]]
        return _Spec(root, names=(v.name,), enum_value=v.value)
    spec = _Spec(root, bit_offset=acc[0] * btf.size_of(root) * 8, field_type=root)
    steps: list[tuple[str, int]] = [("a", acc[0])]
    names: list[str] = []
    tid = root
    for idx in acc[1:]:
        t = btf.resolve(tid)
        if t.kind in _COMPOSITE:
            if idx >= len(t.members):
                raise BtfError(f"CO-RE access {relo.access!r}: member {idx} out of range")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            spec.bitfield_size = m.bitfield_size
            tid = m.type
            if m.name:
                steps.append(("m", len(names)))
                names.append(m.name)
        elif t.kind == Kind.ARRAY:
            tid = t.elem_type
            spec.bit_offset += idx * btf.size_of(tid) * 8
            spec.bitfield_size = 0
            steps.append(("a", idx))
        else:
            raise BtfError(f"CO-RE access {relo.access!r} walks into a {t.kind.name}")
    spec.field_type, spec.steps, spec.names = tid, tuple(steps), tuple(names)
    return spec


def _match_member(tb: Btf, tid: int, name: str, depth: int = 0) -> tuple[int, int, int] | None:
    """(bit offset, bitfield size, member type) of ``name`` in ``tid``, through anonymous
    members."""
    t = tb.resolve(tid)
    if t.kind not in _COMPOSITE or depth > _DEPTH:
        return None
    for m in t.members:
        if m.name == name:
            return m.bit_offset, m.bitfield_size, m.type
        if not m.name:
            sub = _match_member(tb, m.type, name, depth + 1)
            if sub is not None:
                return m.bit_offset + sub[0], sub[1], sub[2]
    return None


def _target_spec(lb: Btf, local: _Spec, relo: CoreRelo, tb: Btf, cand: int) -> _Spec | None:
    """Follow the local path through candidate ``cand`` of the target BTF, by names."""
    if relo.kind in _TYPE:
        ok = _types_compat(lb, local.root, tb, cand)
        return _Spec(cand, field_type=cand) if ok else None
    if relo.kind in (CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE):
        for v in tb.resolve(cand).values:
            if v.name and _names_match(v.name, local.names[0]):
                return _Spec(cand, enum_value=v.value)
        return None
    first = local.steps[0][1]
    spec = _Spec(cand, bit_offset=first * tb.size_of(cand) * 8)
    tid = cand
    for kind, val in local.steps[1:]:
        if kind == "m":
            found = _match_member(tb, tid, local.names[val])
            if found is None:
                return None
            off, bsz, mtype = found
            spec.bit_offset += off
            spec.bitfield_size = bsz
            tid = mtype
        else:
            t = tb.resolve(tid)
            if t.kind != Kind.ARRAY or (t.nelems and val >= t.nelems):
                return None
            tid = t.elem_type
            spec.bit_offset += val * tb.size_of(tid) * 8
            spec.bitfield_size = 0
    if not _fields_compat(lb, local.field_type, tb, tid):
        return None
    spec.field_type = tid
    return spec


def _field_value(btf: Btf, spec: _Spec, kind: CoreReloKind) -> int:
    """What a FIELD_* relocation evaluates to for one spec (libbpf's calc_field_relo)."""
    ft = btf.resolve(spec.field_type)
    bit_off, bit_sz = spec.bit_offset, spec.bitfield_size
    if not bit_sz:
        byte_sz = btf.size_of(spec.field_type)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    else:
        byte_sz = ft.size or 1
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise BtfError("CO-RE bitfield cannot be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    if kind == CoreReloKind.FIELD_BYTE_OFFSET:
        return byte_off
    if kind == CoreReloKind.FIELD_BYTE_SIZE:
        return byte_sz
    if kind == CoreReloKind.FIELD_EXISTS:
        return 1
    if kind == CoreReloKind.FIELD_SIGNED:
        return int(ft.is_signed)
    if kind == CoreReloKind.FIELD_LSHIFT_U64:
        return 64 - (bit_off + bit_sz - byte_off * 8)
    return 64 - bit_sz  # FIELD_RSHIFT_U64


def _value(btf: Btf, spec: _Spec, kind: CoreReloKind) -> int:
    if kind in _FIELD:
        return _field_value(btf, spec, kind)
    if kind in (CoreReloKind.TYPE_ID_LOCAL, CoreReloKind.TYPE_ID_TARGET):
        return spec.root
    if kind == CoreReloKind.TYPE_SIZE:
        return btf.size_of(spec.root)
    if kind == CoreReloKind.ENUMVAL_VALUE:
        return spec.enum_value
    return 1  # TYPE_EXISTS, TYPE_MATCHES, ENUMVAL_EXISTS


class CoreResolver:
    """Resolves relocations of one object (local BTF) against one target (vmlinux) BTF,
    caching candidate lists per local type."""

    def __init__(self, local: Btf, target: Btf) -> None:
        self.local = local
        self.target = target
        self._cands: dict[int, list[int]] = {}

    def candidates(self, local_id: int) -> list[int]:
        if local_id not in self._cands:
            lt = self.local[local_id]
            name = essential_name(lt.name)
            if not name:
                raise BtfError(f"CO-RE relocation on anonymous type {local_id}")
            ids = []
            for cid in self.target.find(name):
                if _kinds_compat(self.target.types[cid].kind, lt.kind):
                    ids.append(cid)
            for tid in self.target.flavours(name):      # name___flavour in the target
                if _kinds_compat(self.target.types[tid].kind, lt.kind):
                    ids.append(tid)
            self._cands[local_id] = ids
        return self._cands[local_id]

    def resolve(self, relo: CoreRelo) -> tuple[int, int, bool]:
        """``(orig, new, poison)`` for one relocation."""
        local = _local_spec(self.local, relo)
        orig = _value(self.local, local, relo.kind)
        if relo.kind == CoreReloKind.TYPE_ID_LOCAL:
            return orig, orig, False
        results: dict[int, int] = {}
        for cand in self.candidates(relo.type_id):
            spec = _target_spec(self.local, local, relo, self.target, cand)
            if spec is not None:
                results[cand] = _value(self.target, spec, relo.kind)
        if not results:
            if relo.kind in _EXISTS:
                return orig, 0, False
            return orig, 0, True
        values = set(results.values())
        if len(values) > 1 and relo.kind != CoreReloKind.TYPE_ID_TARGET:
            raise BtfError(f"CO-RE relocation {relo.kind.name} {relo.access!r} on"
                           f" {self.local[relo.type_id].name!r} is ambiguous: candidates"
                           f" {sorted(results)} give {sorted(values)}")
        return orig, next(iter(results.values())), False


def _poison() -> Instruction:
    return Instruction(Class.JMP | 0x80, imm=POISON_HELPER)


def _patch(insn: Instruction, relo: CoreRelo, orig: int, new: int) -> Instruction:
    cls = insn.opcode & 0x07
    where = f"CO-RE {relo.kind.name} {relo.access!r}"
    if insn.opcode == LD_IMM64:
        if insn.imm != orig:
            raise BtfError(f"{where}: LD_IMM64 holds {insn.imm}, expected {orig}")
        return Instruction(insn.opcode, insn.dst, insn.src, insn.off, new)
    if cls in (Class.ALU, Class.ALU64):
        if insn.opcode & 0x08:
            raise BtfError(f"{where}: ALU instruction with a register source")
        if insn.imm != orig:
            raise BtfError(f"{where}: instruction immediate is {insn.imm}, expected {orig}")
        if not -(1 << 31) <= new < 1 << 31:
            raise BtfError(f"{where}: value {new} does not fit a 32-bit immediate")
        return Instruction(insn.opcode, insn.dst, insn.src, insn.off, new)
    if cls in (Class.LDX, Class.ST, Class.STX):
        if relo.kind != CoreReloKind.FIELD_BYTE_OFFSET:
            raise BtfError(f"{where} cannot patch a memory access")
        if insn.off != orig:
            raise BtfError(f"{where}: instruction offset is {insn.off}, expected {orig}")
        if new > 0x7FFF:
            raise BtfError(f"{where}: offset {new} does not fit 16 bits")
        return Instruction(insn.opcode, insn.dst, insn.src, new, insn.imm)
    raise BtfError(f"{where}: cannot patch opcode {insn.opcode:#04x}")


def _resize(insn: Instruction, relo: CoreRelo, resolver: CoreResolver) -> Instruction:
    """Adjust a load/store's width when the target field has another size (ints only)."""
    cls = insn.opcode & 0x07
    if cls not in (Class.LDX, Class.ST, Class.STX) or insn.opcode & 0xE0 != Mode.MEM:
        return insn
    size_relo = CoreRelo(relo.insn_off, relo.type_id, relo.access, CoreReloKind.FIELD_BYTE_SIZE)
    try:
        orig_sz, new_sz, poison = resolver.resolve(size_relo)
    except BtfError:
        return insn
    sizes = {1: Size.B, 2: Size.H, 4: Size.W, 8: Size.DW}
    if poison or orig_sz == new_sz or new_sz not in sizes:
        return insn
    if Size(insn.opcode & 0x18).nbytes != orig_sz:
        return insn
    return Instruction((insn.opcode & ~0x18) | sizes[new_sz], insn.dst, insn.src, insn.off,
                       insn.imm)


def apply_core_relocations(prog: object, local: Btf, target: Btf,
                           resolver: CoreResolver | None = None) -> list[CoreResult]:
    """Patch ``prog.instructions`` (a :class:`~pyxdp.spec.ProgramSpec`) in place.

    ``prog.core_relos`` hold :class:`CoreRelo` with ``insn_off`` in instruction *slots*.
    Unresolvable relocations poison the instruction (a call to an invalid helper), as
    libbpf does, so code guarded by ``bpf_core_field_exists()`` still loads.
    """
    resolver = resolver or CoreResolver(local, target)
    insns: list[Instruction] = prog.instructions  # type: ignore[attr-defined]
    results = []
    poisoned: list[int] = []
    slot_to_index = {s: i for i, s in enumerate(slot_offsets(insns))}
    for relo in prog.core_relos:  # type: ignore[attr-defined]
        idx = slot_to_index.get(relo.insn_off)
        if idx is None:
            raise BtfError(f"CO-RE relocation at slot {relo.insn_off} is not on an instruction")
        orig, new, poison = resolver.resolve(relo)
        if poison:
            poisoned.append(idx)
        else:
            insn = insns[idx]
            if relo.kind == CoreReloKind.FIELD_BYTE_OFFSET:
                insn = _resize(insn, relo, resolver)
            insns[idx] = _patch(insn, relo, orig, new)
        results.append(CoreResult(relo, idx, orig, new, poison))
    for idx in sorted(poisoned, reverse=True):
        _poison_at(prog, idx)
    return results


def _poison_at(prog: object, idx: int) -> None:
    insns: list[Instruction] = prog.instructions  # type: ignore[attr-defined]
    if insns[idx].opcode != LD_IMM64:
        insns[idx] = _poison()
        return
    insns[idx:idx + 1] = [_poison(), _poison()]   # keep the slot count: jumps stay valid
    refs = prog.map_refs  # type: ignore[attr-defined]
    prog.map_refs = {(i + 1 if i > idx else i): r for i, r in refs.items()}  # type: ignore[attr-defined]
