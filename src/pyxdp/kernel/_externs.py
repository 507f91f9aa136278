"""Values of an object's externs from the running kernel, as libbpf resolves them.

* ``.kconfig``: ``CONFIG_*`` from ``/boot/config-$(uname -r)``, else ``/proc/config.gz``;
  ``LINUX_KERNEL_VERSION`` from ``uname`` (Ubuntu: ``/proc/version_signature``);
  ``LINUX_HAS_SYSCALL_WRAPPER``; a weak extern without a value is 0, a strong one an error.
* ``__ksym`` variables: typed ones by their vmlinux BTF id (``LD_IMM64`` ``BTF_ID``),
  typeless ones by their ``/proc/kallsyms`` address.
* kfuncs: the vmlinux BTF id of the FUNC, whose prototype must be compatible.

Only vmlinux BTF is searched: kfuncs and ksyms of modules are refused by name.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterable, Mapping

from pyxdp.btf import Btf, Kind, essential_name, types_compatible
from pyxdp.errors import BtfError
from pyxdp.isa import LD_IMM64, CallSrc, Instruction, PseudoSrc
from pyxdp.spec import ExternSpec, ObjectSpec, ProgramSpec

_CALL = 0x85
_LINE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")


def kernel_config_paths() -> list[str]:
    return [f"/boot/config-{os.uname().release}", "/proc/config.gz"]


def read_kconfig(paths: Iterable[str] | None = None) -> dict[str, str]:
    """``CONFIG_NAME -> raw value`` (``y``, ``m``, ``"text"``, ``250``) of the first
    readable config file; options that are not set are absent."""
    for path in kernel_config_paths() if paths is None else paths:
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt", errors="replace") as f:
                    text = f.read()
            else:
                with open(path, errors="replace") as f:
                    text = f.read()
        except OSError:
            continue
        out = {}
        for line in text.splitlines():
            m = _LINE.match(line.strip())
            if m:
                out[m.group(1)] = m.group(2)
        return out
    raise BtfError("cannot read the kernel config (tried "
                   + ", ".join(kernel_config_paths() if paths is None else paths) + ")")


def kernel_version() -> int:
    """libbpf's ``get_kernel_version``: KERNEL_VERSION(a, b, c) with c capped at 255."""
    try:
        with open("/proc/version_signature") as f:        # Ubuntu
            parts = f.read().split()
        nums = re.match(r"(\d+)\.(\d+)\.(\d+)", parts[2])
    except (OSError, IndexError):
        nums = re.match(r"(\d+)\.(\d+)\.(\d+)", os.uname().release)
    if nums is None:
        return 0
    a, b, c = (int(x) for x in nums.groups())
    return (a << 16) + (b << 8) + min(c, 255)


def read_kallsyms(names: Iterable[str], path: str = "/proc/kallsyms") -> dict[str, int]:
    """Addresses of ``names`` in kallsyms; a name found at two addresses is ambiguous."""
    want = set(names)
    out: dict[str, int] = {}
    if not want:
        return out
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or parts[2] not in want:
                continue
            addr = int(parts[0], 16)
            if parts[2] in out and out[parts[2]] != addr:
                raise BtfError(f"extern (ksym) {parts[2]!r}: resolution is ambiguous:"
                               f" {out[parts[2]]:#x} or {addr:#x}")
            out[parts[2]] = addr
    return out


def _kcfg_bytes(ext: ExternSpec, raw: str) -> bytes:
    """One Kconfig value in the extern's type (libbpf's ``set_kcfg_value_*``)."""
    where = f"extern (kcfg) {ext.name!r}"
    if raw in ("y", "n", "m"):
        if ext.kcfg_type == "bool":
            if raw == "m":
                raise BtfError(f"{where}: value 'm' implies tristate or char type")
            return bytes([raw == "y"])
        if ext.kcfg_type == "tristate":
            return {"y": 1, "n": 0, "m": 2}[raw].to_bytes(ext.size, "little")
        if ext.kcfg_type == "char":
            return raw.encode()
        raise BtfError(f"{where}: value {raw!r} implies bool, tristate, or char type")
    if raw.startswith('"'):
        if ext.kcfg_type != "char_arr":
            raise BtfError(f"{where}: value {raw} implies a char array type")
        text = raw[1:-1] if raw.endswith('"') and len(raw) >= 2 else raw[1:]
        data = text.encode()[:ext.size - 1]
        return data.ljust(ext.size, b"\0")
    try:
        num = int(raw, 0)
    except ValueError:
        raise BtfError(f"{where}: cannot parse value {raw!r}") from None
    if ext.kcfg_type not in ("int", "char", "bool"):
        raise BtfError(f"{where}: value {num} implies an integer type")
    bits = ext.size * 8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if ext.signed else (0, (1 << bits) - 1)
    if ext.kcfg_type == "bool":
        lo, hi = 0, 1
    if not lo <= num <= hi:
        raise BtfError(f"{where}: value {num} does not fit {ext.size} bytes")
    return num.to_bytes(ext.size, "little", signed=ext.signed)


def kconfig_contents(obj: ObjectSpec, size: int,
                     config: Mapping[str, str] | None = None) -> bytes:
    """The ``.kconfig`` map value for ``obj``'s kconfig externs."""
    buf = bytearray(size)
    exts = [e for e in obj.externs.values() if e.kind == "kconfig"]
    if config is None and any(e.name.startswith("CONFIG_") for e in exts):
        try:
            config = read_kconfig()
        except BtfError:
            if any(not e.weak for e in exts if e.name.startswith("CONFIG_")):
                raise
            config = {}
    for e in exts:
        raw: str | None
        if e.name == "LINUX_KERNEL_VERSION":
            raw = str(kernel_version())
        elif e.name == "LINUX_HAS_SYSCALL_WRAPPER":
            raw = "1" if read_kallsyms(["__x64_sys_bpf"]) else "0"
        elif e.name.startswith("LINUX_"):
            raise BtfError(f"extern (kcfg) {e.name!r}: unrecognized LINUX_* extern")
        else:
            raw = (config or {}).get(e.name)
        if raw is None:
            if not e.weak:
                raise BtfError(f"extern {e.name!r} (strong): not resolved (the kernel config"
                               " does not set it; declare it __weak to default to 0)")
            continue
        value = _kcfg_bytes(e, raw)
        buf[e.offset:e.offset + len(value)] = value
    return bytes(buf)


def _ksym_btf_id(vmlinux: Btf | None, name: str, kind: Kind, what: str) -> int | None:
    if vmlinux is None:
        raise BtfError(f"{what}: needs kernel BTF (/sys/kernel/btf/vmlinux)")
    ids = vmlinux.find(essential_name(name), kind)
    return ids[0] if ids else None


def resolve_ksyms(obj: ObjectSpec, vmlinux: Btf | None) -> dict[str, tuple[int, int]]:
    """``name -> (LD_IMM64 src, imm)`` of every ksym/kfunc extern a program uses (a kfunc
    call takes the imm, its BTF id; taking a kfunc's address loads that id as BTF_ID)."""
    used = {n for p in obj.programs.values() for n in p.extern_refs.values()}
    exts = [obj.externs[n] for n in sorted(used)]
    typeless = [e.name for e in exts if e.kind == "ksym" and not e.type_id]
    addrs = read_kallsyms(typeless) if typeless else {}
    out: dict[str, tuple[int, int]] = {}
    for e in exts:
        if e.kind == "kfunc":
            what = f"extern (func ksym) {e.name!r}"
            kid = _ksym_btf_id(vmlinux, e.name, Kind.FUNC, what)
            if kid is None:
                if not e.weak:
                    raise BtfError(f"{what}: not found in kernel BTF (vmlinux; module BTF"
                                   " is not searched)")
                out[e.name] = (PseudoSrc.IMM64, 0)      # unresolved weak kfunc: id 0
                continue
            assert vmlinux is not None
            if not types_compatible(obj.btf, e.type_id, vmlinux, vmlinux[kid].type):
                raise BtfError(f"{what}: func_proto [{e.type_id}] incompatible with"
                               f" vmlinux [{kid}]")
            out[e.name] = (PseudoSrc.BTF_ID, kid)
        elif e.type_id:
            what = f"extern (var ksym) {e.name!r}"
            kid = _ksym_btf_id(vmlinux, e.name, Kind.VAR, what)
            if kid is None:
                if not e.weak:
                    raise BtfError(f"{what}: not found in kernel BTF (vmlinux; module BTF"
                                   " is not searched)")
                out[e.name] = (PseudoSrc.IMM64, 0)
                continue
            assert vmlinux is not None
            if not types_compatible(obj.btf, e.type_id, vmlinux, vmlinux[kid].type):
                raise BtfError(f"{what}: incompatible types, local [{e.type_id}] but kernel"
                               f" VAR [{kid}]")
            out[e.name] = (PseudoSrc.BTF_ID, kid)
        else:
            if e.name not in addrs and not e.weak:
                raise BtfError(f"extern {e.name!r} (strong): not resolved (not in"
                               " /proc/kallsyms)")
            out[e.name] = (PseudoSrc.IMM64, addrs.get(e.name, 0))
    return out


def patch_externs(prog: ProgramSpec, values: Mapping[str, tuple[int, int]]) -> list[Instruction]:
    """``prog``'s instructions with kfunc calls and ksym loads filled in."""
    insns = list(prog.instructions)
    for idx, name in prog.extern_refs.items():
        src, imm = values[name]
        old = insns[idx]
        if old.opcode == _CALL:
            insns[idx] = Instruction(_CALL, 0, CallSrc.KFUNC, 0, imm)
        elif old.opcode == LD_IMM64:
            insns[idx] = Instruction(LD_IMM64, old.dst, src, 0, imm)
        else:
            raise BtfError(f"program {prog.name!r}: extern {name!r} on opcode"
                           f" {old.opcode:#04x}")
    return insns
