"""Loading programs into the kernel, and the live :class:`Program` object.

Loads first run *without* a verifier log: the log costs the verifier time and memory, and
most loads succeed.  Only when a load fails is it repeated with ``log_level=1`` and a
buffer that grows until the whole log fits, so a :class:`~pyxdp.errors.VerifierError`
always carries the complete log, the failing instruction and, with line info, the source.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno as _errno
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from pyxdp.abi import AttachType, Cmd, ProgType, XdpMd
from pyxdp.backend import RunResult
from pyxdp.errors import BpfError, MapError, VerifierError
from pyxdp.isa import LD_IMM64, Instruction, PseudoSrc, decode, encode, slot_offsets
from pyxdp.kernel._fd import Fd, fd_number
from pyxdp.kernel._info import ProgInfo, fd_by_id, prog_info, prog_xlated
from pyxdp.kernel._map import expect_kind
from pyxdp.kernel._owned import OwnedObject
from pyxdp.kernel._pin import obj_get
from pyxdp.kernel._sys import ProgLoadAttr, addr, bpf, obj_name
from pyxdp.kernel._testrun import test_run
from pyxdp.spec import FuncInfo, LineInfo, ProgramSpec

LOG_START = 1 << 16
LOG_MAX = 0xFFFFFFFF >> 2            # the kernel's cap on log_size
_EAGAIN_RETRIES = 5
_INSN_LINE = re.compile(r"^(\d+): \([0-9a-f]{2}\)", re.M)
_INSN_WORD = re.compile(r"\binsn #?(\d+)")


def patch_map_refs(spec: ProgramSpec, maps: Mapping[str, Any]) -> list[Instruction]:
    """The instructions of ``spec`` with every map reference resolved to a live map fd.

    ``MAP_FD`` refs become ``imm = fd``; ``MAP_VALUE`` refs ``imm = fd | offset << 32``
    (the kernel reads the second slot's imm as the offset into value 0).
    """
    insns = list(spec.instructions)
    for index, ref in spec.map_refs.items():
        insn = insns[index]
        if insn.opcode != LD_IMM64:
            raise MapError(f"program {spec.name!r}: map reference to {ref.map_name!r} at"
                           f" instruction {index} is not on a LD_IMM64")
        try:
            target = maps[ref.map_name]
        except KeyError:
            raise MapError(f"program {spec.name!r} references map {ref.map_name!r} at"
                           f" instruction {index}, but no such map was given"
                           f" (have: {', '.join(sorted(maps)) or 'none'})") from None
        fd = fd_number(target)
        if ref.kind == PseudoSrc.MAP_VALUE:
            imm = fd | (ref.offset << 32)
        else:
            imm = fd
        insns[index] = Instruction(LD_IMM64, insn.dst, int(ref.kind), 0, imm)
    return insns


def failing_insn(log: str) -> int | None:
    """The instruction *slot* the verifier stopped at, parsed from its log.

    The last ``N: (op) ...`` line is the instruction being checked when the verifier
    gave up; without one (structural errors such as a bad jump) the last ``insn N`` mention.
    """
    hits = _INSN_LINE.findall(log)
    if hits:
        return int(hits[-1])
    for line in reversed(log.splitlines()):
        m = _INSN_WORD.search(line)
        if m:
            return int(m.group(1))
    return None


def _slot_to_index(insns: Sequence[Instruction], slot: int) -> int:
    """Index into ``insns`` of the instruction occupying ``slot`` (LD_IMM64 takes two)."""
    for i, off in enumerate(slot_offsets(list(insns))):
        if off <= slot < off + insns[i].slots:
            return i
    return slot


def _source_text(li: LineInfo | None) -> str | None:
    if li is None:
        return None
    where = f"{li.file_name}:{li.line}" + (f":{li.column}" if li.column else "")
    return where + (f": {li.line_text.strip()}" if li.line_text.strip() else "")


class Program(OwnedObject):
    """A loaded program. Owns its :class:`Fd`; ``close()`` or ``with`` unloads it
    (unless something else still holds it: a link, a pin, a prog array)."""

    def __init__(self, fd: Fd, name: str = "", type: ProgType | int = ProgType.UNSPEC,
                 instructions: list[Instruction] | None = None,
                 verifier_log: str = "") -> None:
        self.fd = fd
        self.name = name
        self.type = type
        self.instructions = instructions or []
        self.verifier_log = verifier_log
        self._pinned: str | None = None

    @classmethod
    def load(cls, insns_or_spec: ProgramSpec | Sequence[Instruction], *,
             type: ProgType | None = None, expected_attach_type: AttachType | None = None,
             license: str | None = None, name: str | None = None, btf_fd: object = None,
             func_info: Sequence[FuncInfo] | None = None,
             line_info: Sequence[LineInfo] | None = None, flags: int | None = None,
             log_level: int = 0, maps: Mapping[str, Any] | None = None,
             attach_btf_id: int = 0, attach_prog_fd: object = None,
             kern_version: int | None = None, ifindex: int = 0) -> Program:
        """Load a program (BPF_PROG_LOAD).

        ``insns_or_spec`` is a list of :class:`Instruction` (type defaults to XDP) or a
        :class:`ProgramSpec`, whose ``map_refs`` are patched from ``maps`` (name → map).
        Explicit keyword arguments override what the spec says.  ``log_level > 0`` keeps
        the verifier log of a *successful* load in :attr:`verifier_log`.

        Raises :class:`VerifierError` (full log, failing instruction index into the
        instruction list, source line from line info) or :class:`BpfError`.
        """
        if isinstance(insns_or_spec, ProgramSpec):
            spec = insns_or_spec
            insns = patch_map_refs(spec, maps or {}) if spec.map_refs else list(
                spec.instructions)
        else:
            insns = list(insns_or_spec)
            spec = ProgramSpec(name=name or "pyxdp_prog", type=type or ProgType.XDP,
                               instructions=insns)
        ptype = ProgType(type if type is not None else spec.type)
        pname = name if name is not None else spec.name
        finfo = list(func_info if func_info is not None else spec.func_info)
        linfo = list(line_info if line_info is not None else spec.line_info)
        eat = expected_attach_type if expected_attach_type is not None else (
            spec.expected_attach_type)
        if line_info is not None:     # the verifier's source lines follow the given info
            spec = dataclasses.replace(spec, line_info=linfo)

        code = encode(insns)
        lic = (license if license is not None else spec.license).encode() + b"\0"
        code_buf = ctypes.create_string_buffer(code, len(code))
        lic_buf = ctypes.create_string_buffer(lic, len(lic))
        attr = ProgLoadAttr(
            prog_type=ptype, insn_cnt=len(code) // 8, insns=addr(code_buf),
            license=addr(lic_buf),
            kern_version=kern_version if kern_version is not None else spec.kernel_version,
            prog_flags=flags if flags is not None else spec.flags,
            prog_name=obj_name(pname), prog_ifindex=ifindex,
            expected_attach_type=int(eat) if eat is not None else 0,
            attach_btf_id=attach_btf_id,
            attach_prog_fd=fd_number(attach_prog_fd) if attach_prog_fd is not None else 0)
        keep: list[Any] = []
        if btf_fd is not None:
            attr.prog_btf_fd = fd_number(btf_fd)
            if finfo:
                blob = b"".join(struct.pack("<II", f.insn_off, f.type_id) for f in finfo)
                keep.append(_set_records(attr, "func_info", blob, 8, len(finfo)))
            if linfo:
                blob = b"".join(struct.pack(
                    "<IIII", li.insn_off, li.file_name_off, li.line_off,
                    li.line_col or (li.line << 10 | (li.column & 0x3FF))) for li in linfo)
                keep.append(_set_records(attr, "line_info", blob, 16, len(linfo)))

        fd, log = _load_with_log(attr, log_level, pname, insns, spec)
        return cls(fd, pname, ptype, insns, log)

    # -- other ways to get one ---------------------------------------------------------
    @classmethod
    def from_fd(cls, fd: Fd, *, what: str | None = None) -> Program:
        """Wrap an owned program fd (ownership passes to the program).

        Raises :class:`BpfError` (``EINVAL``, and closes ``fd``) when the fd is not a
        program; ``what`` names it in that message (e.g. the pin path it came from).
        """
        try:
            problem = expect_kind(fd, "program", what)
            if problem is not None:
                raise BpfError(_errno.EINVAL, "BPF_OBJ_GET_INFO_BY_FD", problem)
            info = prog_info(fd)
        except BaseException:
            fd.close()
            raise
        return cls(fd, info.name, info.type)

    @classmethod
    def from_pin(cls, path: str) -> Program:
        """Open a program pinned at ``path``; a pinned map or link raises :class:`BpfError`."""
        return cls.from_fd(obj_get(path), what=path)

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        return cls.from_fd(fd_by_id(Cmd.PROG_GET_FD_BY_ID, prog_id))

    # -- introspection -----------------------------------------------------------------
    def info(self) -> ProgInfo:
        return prog_info(self.fd)

    @property
    def id(self) -> int:
        return self.info().id

    @property
    def tag(self) -> str:
        """The kernel's program tag (hex), as ``bpftool prog show`` prints it."""
        return self.info().tag

    def xlated(self) -> list[Instruction]:
        """The program as the kernel holds it after verification and rewriting."""
        return decode(prog_xlated(self.fd), strict=False)

    def _not_pinned(self) -> Exception:
        return ValueError(f"program {self.name!r} is not pinned")

    def test_run(self, data: bytes = b"", **kwargs: Any) -> Any:
        """Run once in the kernel (BPF_PROG_TEST_RUN); see :func:`pyxdp.kernel.test_run`."""
        return test_run(self, data, **kwargs)

    def run_packet(self, packet: bytes, *, ingress_ifindex: int | None = None,
                   rx_queue_index: int = 0) -> RunResult:
        """The backend protocol's run (:class:`pyxdp.backend.LoadedProgram`): one
        BPF_PROG_TEST_RUN on ``packet``; with ``ingress_ifindex`` an ``xdp_md`` context
        naming that device and queue (which must exist in the caller's namespace)."""
        ctx = None
        try:
            ptype = ProgType(self.type)
        except ValueError:
            ptype = ProgType.UNSPEC
        if ingress_ifindex is not None and ptype != ProgType.XDP:
            raise ValueError(f"ingress_ifindex sets an XDP context; {self.name!r} is a"
                             f" {ptype.name} program")
        if ingress_ifindex is not None:
            ctx = XdpMd(data=0, data_end=len(packet), ingress_ifindex=ingress_ifindex,
                        rx_queue_index=rx_queue_index)
        elif rx_queue_index:
            raise ValueError("rx_queue_index needs an ingress_ifindex")
        res = test_run(self, packet, ctx=ctx)
        return RunResult(res.retval, res.data_out, res.duration_ns, ptype)

    def __repr__(self) -> str:
        state = "closed" if self.fd.closed else f"fd={self.fd.fileno()}"
        kind = self.type.name if isinstance(self.type, ProgType) else self.type
        return f"<Program {self.name!r} {kind} {state}>"


def _set_records(attr: ProgLoadAttr, kind: str, blob: bytes, rec_size: int,
                 count: int) -> ctypes.Array:
    buf = ctypes.create_string_buffer(blob, len(blob))
    setattr(attr, kind, addr(buf))
    setattr(attr, f"{kind}_rec_size", rec_size)
    setattr(attr, f"{kind}_cnt", count)
    return buf


def _try_load(attr: ProgLoadAttr) -> int:
    for attempt in range(_EAGAIN_RETRIES + 1):
        try:
            return bpf(Cmd.PROG_LOAD, attr)
        except BpfError as e:  # EAGAIN: the verifier was interrupted by a signal
            if e.errno != _errno.EAGAIN or attempt == _EAGAIN_RETRIES:
                raise
    raise AssertionError("unreachable")


def _load_with_log(attr: ProgLoadAttr, log_level: int, name: str,
                   insns: Sequence[Instruction], spec: ProgramSpec) -> tuple[Fd, str]:
    if log_level == 0:
        try:
            return Fd(_try_load(attr)), ""
        except BpfError as e:
            if e.errno == _errno.EPERM:  # privileges, not the program: a log will not help
                raise
    size = LOG_START
    while True:
        buf = ctypes.create_string_buffer(size)
        attr.log_level, attr.log_size, attr.log_buf = max(log_level, 1), size, addr(buf)
        attr.log_true_size = 0
        try:
            fd = Fd(_try_load(attr))
            return fd, buf.value.decode(errors="replace") if log_level else ""
        except BpfError as e:
            if e.errno == _errno.ENOSPC and size < LOG_MAX:
                size = min(max(size * 4, attr.log_true_size + 1), LOG_MAX)
                continue
            log = buf.value.decode(errors="replace")
            attr.log_level, attr.log_size, attr.log_buf = 0, 0, 0
            if not log.strip():
                raise
            slot = failing_insn(log)
            index = _slot_to_index(insns, slot) if slot is not None else None
            source = _source_text(spec.source_line(index)) if index is not None else None
            raise VerifierError(e.errno, name, log, index, source) from None


__all__ = ["Program", "failing_insn", "patch_map_refs"]
