"""The ``pyxdp`` command line: thin wrappers that parse, call the library, and render.

Each command group lives in its own module with a ``register(subparsers)`` function; the
library does the work, so everything here is also reachable from Python.  :data:`COMMANDS`
lists every command with its module and one-line help, so ``pyxdp --help`` is built without
importing any group, and running a command imports its group only (``pyxdp prog list`` never
loads the compiler or an app).  Errors of ours (:class:`~pyxdp.errors.PyxdpError`, including
the kernel's ``OSError``\\ s) print one line on stderr and exit 1; argument mistakes exit 2.
Anything else is a bug of ours: it still prints one line (``internal error: ...``, with
the traceback under ``PYXDP_DEBUG=1``) and exits 1.
Commands that print data take ``-j/--json`` (also accepted before the command, as bpftool
does: ``pyxdp -j prog list``).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import sys

from pyxdp import __version__
from pyxdp.cli._render import UsageError
from pyxdp.errors import PyxdpError

# typing costs milliseconds at start-up and only the type checker needs it here
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

# module: pyxdp.cli.<module> registers the command; help: its line in `pyxdp --help`
Command = collections.namedtuple("Command", ["module", "help"])


COMMANDS: dict[str, Command] = {
    "load": Command("_kernel", "load a BPF object (all its maps and programs) into the kernel"),
    "prog": Command("_kernel", "inspect loaded programs (like bpftool prog)"),
    "map": Command("_kernel", "inspect maps (like bpftool map)"),
    "features": Command("_kernel",
                        "what the running kernel supports (like bpftool feature probe)"),
    "attach": Command("_xdp", "attach an XDP program from an ELF object to an interface"),
    "detach": Command("_xdp", "detach the XDP program of an interface"),
    "status": Command("_xdp", "which XDP programs run on which interfaces"),
    "filter": Command("_filter", "DDoS protection: drop by prefix, port, pattern, rate"),
    "router": Command("_router", "route IPv4/IPv6 between interfaces at XDP (kernel FIB)"),
    "switch": Command("_switch", "an L2 learning switch between interfaces at XDP (VLANs)"),
    "tunnel": Command("_tunnel", "terminate and originate tunnels at XDP: IPIP, GUE, GRE, VXLAN,"
                                 " Geneve, SRv6"),
    "ila": Command("_ila", "ILA: SIR addresses translated to locators and back at XDP"
                           " (draft-herbert-intarea-ila)"),
    "lb": Command("_lb", "an L4 load balancer (IPVS replacement): Maglev, IPIP/GUE/DSR,"
                         " health checks"),
    "fleet": Command("_fleet", "one filter policy on many hosts through etcd: push, status,"
                               " rollback"),
    "agent": Command("_fleet", "a host's fleet agent: applies the policy etcd names for it"),
    "chain": Command("_chain", "several XDP programs on one interface, changed atomically"),
    "top": Command("_top", "a live view of every XDP program: packets/s, ns/packet, chain"
                           " stages"),
    "dump": Command("_dump", "packets seen at XDP with their verdicts (line per packet or"
                             " pcapng)"),
    "compile": Command("_compile", "compile a Python XDP program (pyxdp dialect) to BPF"),
    "asm": Command("_asm", "assemble eBPF text to raw instructions"),
    "disasm": Command("_asm", "disassemble raw instructions or an ELF object"),
    "emu": Command("_emu", "run an XDP program in the emulator over packets"),
    "trafficgen": Command("_trafficgen", "send XDP live frames (UDP/TCP SYN/ICMP, v4/v6)"),
    "demo": Command("_demo", "the filter against a SYN flood, or (demo lb) a load-balanced"
                             " service losing a real, on a test bed (emulator if not root)"),
    "bench": Command("_bench", "TC vs XDP drop/TX rates on a veth test bed, with reference tools"),
}


class _Registrar:
    """What a group's ``register()`` receives: ``add_parser`` of the real subparsers, with
    the help line from :data:`COMMANDS` (one home for it) and a check that the command is
    listed there for this module."""

    def __init__(self, sub: argparse._SubParsersAction, module: str) -> None:
        self._sub = sub
        self.module = module
        self.added: list[str] = []

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        cmd = COMMANDS.get(name)
        if cmd is None or cmd.module != self.module:
            raise RuntimeError(f"pyxdp.cli.{self.module} registers {name!r}, which"
                               " pyxdp.cli.COMMANDS does not list for it")
        kwargs["help"] = cmd.help
        kwargs.setdefault("description", cmd.help[:1].upper() + cmd.help[1:] + ".")
        self.added.append(name)
        return self._sub.add_parser(name, **kwargs)


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv``: the top-level options take no values."""
    return next((a for a in argv if not a.startswith("-")), None)


def register_group(sub: argparse._SubParsersAction, module: str) -> list[str]:
    """Import ``pyxdp.cli.<module>`` and let it add its commands; returns their names."""
    reg = _Registrar(sub, module)
    importlib.import_module(f"pyxdp.cli.{module}").register(reg)
    return reg.added


def build_parser(argv: Sequence[str] | None = None, *,
                 full: bool = False) -> argparse.ArgumentParser:
    """The ``pyxdp`` parser for ``argv``: when it names a command, that command's group
    only; otherwise (``pyxdp --help``, a typo) one-line entries for every command, which
    import nothing.  ``full`` registers every group (docs, tests)."""
    parser = argparse.ArgumentParser(
        prog="pyxdp", description="Program the Linux kernel's eXpress Data Path from Python.")
    parser.add_argument("--version", action="version", version=f"pyxdp {__version__}")
    parser.add_argument("-j", "--json", dest="json_first", action="store_true",
                        help="JSON output for the command that follows (as its --json)")
    wanted = None if full else COMMANDS.get(_command_of(argv or ()) or "")
    if wanted is not None or full:
        sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                    prog=parser.prog)
        for module in ([wanted.module] if wanted else dict.fromkeys(
                c.module for c in COMMANDS.values())):
            register_group(sub, module)
        return parser
    # `pyxdp --help`, or no or an unknown command: names and help lines only
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                prog=parser.prog, parser_class=_Unloaded)
    for name, cmd in COMMANDS.items():
        sub.add_parser(name, help=cmd.help)
    return parser


class _Unloaded(argparse.ArgumentParser):
    """Stands in for a group's parser in the ``pyxdp --help`` listing, and costs nothing
    to make: argparse only uses a command's parser when the command is named, and then
    :func:`build_parser` has registered the real one."""

    def __init__(self, **kwargs: Any) -> None:   # no ArgumentParser set-up: never parses
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.json_first:
        if not hasattr(args, "json"):
            parser.error(f"{args.command} has no JSON output")
        args.json = True
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:             # `pyxdp prog list | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UsageError as e:
        print(f"pyxdp {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (PyxdpError, OSError) as e:
        print(f"pyxdp {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"pyxdp {args.command}: interrupted", file=sys.stderr)
        return 130
    except (RecursionError, MemoryError) as e:
        # input too deep or too large for us (a crafted rule file, a huge map declared):
        # one line, not a traceback
        what = "nested too deeply" if isinstance(e, RecursionError) else "too large"
        print(f"pyxdp {args.command}: error: input {what} to process"
              f" ({type(e).__name__})", file=sys.stderr)
        return 1
    except Exception as e:    # a bug of ours: one line for the operator, traceback on demand
        if os.environ.get("PYXDP_DEBUG"):
            raise
        print(f"pyxdp {args.command}: internal error: {type(e).__name__}: {e}"
              " (a bug in pyxdp; PYXDP_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
