"""bpf_conformance plugin protocol (``shared/conformance/FORMAT.md`` §1.2).

The upstream runner starts ``plugin [MEM]``: the program arrives on stdin as whitespace
separated hex bytes, MEM (optional, one argument) as whitespace separated hex bytes; the
plugin prints r0 in hex and exits 0, or prints a message on stderr and exits non-zero.
The streams are parameters so the protocol can be tested without a subprocess.
"""

from __future__ import annotations

from typing import TextIO

from pyxdp.errors import PyxdpError


def _hex_bytes(text: str, what: str) -> bytes:
    try:
        return bytes(int(tok, 16) & 0xFF for tok in text.split())
    except ValueError as e:
        raise ValueError(f"bad {what} byte: {e}") from None


def conformance_plugin(argv: list[str], stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """Run one conformance program; returns the process exit status."""
    from pyxdp.emu.program import load
    from pyxdp.isa import decode

    args = [a for a in argv if a != "--elf"]
    if len(args) != len(argv):
        stderr.write("ELF input is not supported by the pyxdp emulator plugin\n")
        return 2
    if len(args) > 1:
        stderr.write("usage: plugin [MEM] < program-hex\n")
        return 2
    try:
        program = _hex_bytes(stdin.read(), "program")
        mem = _hex_bytes(args[0], "memory") if args else None
        prog = load(decode(program))
        r0 = prog.run(mem if mem else None)
    except (PyxdpError, ValueError) as e:
        stderr.write(f"{e}\n")
        return 1
    stdout.write(f"{r0:x}\n")
    return 0
