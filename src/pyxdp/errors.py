"""Every exception pyxdp raises, in one tree.

::

    PyxdpError                      root: catch this to catch anything of ours
    ├── DecodeError (ValueError)    raw instruction bytes that are not valid eBPF
    ├── AsmError (ValueError)       assembly text that does not assemble (line, column)
    ├── ElfError (ValueError)       an object file that cannot be parsed
    ├── BtfError (ValueError)       BTF type information that cannot be parsed
    ├── CompileError (ValueError)   Python source outside the pyxdp dialect
    ├── EmulatorError               a program misbehaved in the emulator (pc, insn, address)
    ├── MapError                    a map operation that cannot be done (wrong key size, full)
    └── BpfError (OSError)          the kernel said no: errno plus the bpf() command
        ├── VerifierError           the verifier rejected a program; keeps the whole log
        └── NotSupportedError       the running kernel lacks a feature

Parse errors are also ``ValueError`` so that generic callers can treat them as bad input;
``BpfError`` is also ``OSError`` so that ``errno`` is never lost.  Missing map keys raise the
builtin ``KeyError``, as a ``dict`` would.
"""

from __future__ import annotations

import errno as _errno
import os

from pyxdp.abi import CAP_BPF, CAP_SYS_ADMIN, ENOTSUPP


class PyxdpError(Exception):
    """Root of every pyxdp exception."""


class DecodeError(PyxdpError, ValueError):
    """Bytes that do not decode to valid eBPF instructions.

    ``offset`` is the byte offset of the offending instruction.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        self.reason = message
        where = f"at byte offset {offset} (insn {offset // 8}): " if offset is not None else ""
        super().__init__(where + message)


class AsmError(PyxdpError, ValueError):
    """Assembly text that does not assemble; names the line, the column and what was expected."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None,
                 text: str | None = None) -> None:
        self.line = line
        self.column = column
        self.text = text
        self.reason = message
        where = ""
        if line is not None:
            where = f"line {line}" + (f", column {column}" if column is not None else "") + ": "
        super().__init__(where + message + (f"\n    {text.strip()}" if text else ""))


class ElfError(PyxdpError, ValueError):
    """An ELF object that cannot be parsed or is not a BPF object."""


class BtfError(PyxdpError, ValueError):
    """BTF type information that cannot be parsed."""


class CompileError(PyxdpError, ValueError):
    """Python source outside the pyxdp dialect, with file:line:col and a hint."""

    def __init__(self, message: str, filename: str = "<unknown>", line: int | None = None,
                 column: int | None = None, hint: str | None = None) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        self.hint = hint
        self.reason = message
        loc = filename
        if line is not None:
            loc += f":{line}" + (f":{column}" if column is not None else "")
        super().__init__(f"{loc}: {message}" + (f" (hint: {hint})" if hint else ""))


class EmulatorError(PyxdpError):
    """A program did something the eBPF machine forbids (bad access, bad helper, too long)."""

    def __init__(self, message: str, pc: int | None = None, insn: object | None = None,
                 address: int | None = None) -> None:
        self.pc = pc
        self.insn = insn
        self.address = address
        self.reason = message
        parts = [message]
        if pc is not None:
            parts.append(f"pc={pc}")
        if insn is not None:
            parts.append(f"insn={insn}")
        if address is not None:
            parts.append(f"address={address:#x}")
        super().__init__(" | ".join(parts))


class MapError(PyxdpError):
    """A map operation with bad arguments (sizes, types) or a map that is full."""


class BpfError(PyxdpError, OSError):
    """The kernel refused a ``bpf()`` command. ``errno`` is kept; ``command`` names the command."""

    errno: int              # always set (OSError's own is Optional)

    def __init__(self, err: int, command: str, detail: str = "") -> None:
        msg = f"bpf({command}) failed: {strerror(err)}"
        if err == _errno.EPERM:
            msg += _eperm_hint()
        if detail:
            msg += f": {detail}"
        OSError.__init__(self, err, msg)
        self.command = command
        self.detail = detail

    def __str__(self) -> str:
        return str(self.strerror)




def strerror(err: int) -> str:
    """``os.strerror`` plus the errno's name, also for the kernel-internal ENOTSUPP (524),
    which libc shows as "Unknown error 524"."""
    if err == ENOTSUPP:
        return "ENOTSUPP (not supported by this kernel) [ENOTSUPP]"
    return f"{os.strerror(err)} [{_errno.errorcode.get(err, err)}]"


def _effective_caps() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _eperm_hint() -> str:
    """Why an EPERM: missing privileges when we lack them, otherwise a policy."""
    caps = _effective_caps()
    if caps is not None and caps & (1 << CAP_SYS_ADMIN | 1 << CAP_BPF):
        return (" (this process has CAP_BPF/CAP_SYS_ADMIN, so a security policy (LSM,"
                " seccomp, lockdown) or the kernel refused this object itself)")
    return (" (hint: loading BPF needs root or CAP_BPF+CAP_NET_ADMIN, and an"
            " unlimited RLIMIT_MEMLOCK on old kernels)")


class VerifierError(BpfError):
    """The verifier rejected a program.

    ``log`` holds the whole verifier log; ``str()`` shows only the decisive last lines,
    the failing instruction index and, where line info exists, the source line.
    """

    def __init__(self, err: int, program: str, log: str, insn_index: int | None = None,
                 source: str | None = None, tail: int = 8) -> None:
        self.program = program
        self.log = log
        self.insn_index = insn_index
        self.source = source
        lines = [ln for ln in log.rstrip().splitlines() if ln.strip()]
        shown = lines[-tail:]
        omitted = len(lines) - len(shown)
        detail = f"program {program!r} rejected by the verifier"
        if insn_index is not None:
            detail += f" at instruction {insn_index}"
        if source:
            detail += f" ({source})"
        body = "\n".join("    " + ln for ln in shown)
        if omitted:
            body = f"    ({omitted} lines omitted)\n" + body
        super().__init__(err, "BPF_PROG_LOAD", detail + (":\n" + body if body else ""))


class NotSupportedError(BpfError):
    """The running kernel lacks a feature; names it and, where known, the first kernel with it."""

    def __init__(self, feature: str, min_kernel: str | None = None, err: int = _errno.EOPNOTSUPP):
        self.feature = feature
        self.min_kernel = min_kernel
        detail = f"{feature} is not supported by this kernel"
        if min_kernel:
            detail += f" (needs Linux {min_kernel} or newer)"
        super().__init__(err, "feature probe", detail)


__all__ = [
    "AsmError", "BpfError", "BtfError", "CompileError", "DecodeError", "ElfError",
    "EmulatorError", "MapError", "NotSupportedError", "PyxdpError", "VerifierError",
    "strerror",
]
