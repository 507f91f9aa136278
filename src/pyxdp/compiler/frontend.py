"""Pass 1, the front end: source text → parsed tree plus the module's declarations.

The module is *executed* once (it is ordinary Python) so that structs, maps and constants
are real objects with their computed layouts; function bodies are never run, only their
``ast`` (with line and column numbers) is compiled.
"""

from __future__ import annotations

import ast
import itertools
import os
import sys
import types as _pytypes
from dataclasses import dataclass, field
from typing import Any

from pyxdp.compiler.lang import Const, MapDecl, ProgramDecl, SubprogDecl
from pyxdp.errors import CompileError

_COUNTER = itertools.count()


@dataclass
class ModuleInfo:
    """One program module: its tree, its namespace and what it declares."""

    filename: str
    source: str
    tree: ast.Module
    env: dict[str, Any]
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)
    programs: dict[str, ProgramDecl] = field(default_factory=dict)
    maps: dict[str, MapDecl] = field(default_factory=dict)
    configs: dict[str, Const] = field(default_factory=dict)
    subprogs: set[str] = field(default_factory=set)     # functions marked @subprog

    def error(self, node: ast.AST | None, message: str, hint: str | None = None
              ) -> CompileError:
        """A CompileError pointing at ``node`` (1-based column, like editors show)."""
        line = getattr(node, "lineno", None)
        col = getattr(node, "col_offset", None)
        return CompileError(message, self.filename, line, None if col is None else col + 1,
                            hint)

    def line_text(self, line: int) -> str:
        lines = self.source.splitlines()
        return lines[line - 1] if 0 < line <= len(lines) else ""


def read_source(path_or_source: str | os.PathLike[str]) -> tuple[str, str]:
    """``(source, filename)`` from a path to a ``.py`` file or from source text."""
    text = os.fspath(path_or_source)
    if "\n" not in text and text.endswith(".py"):
        with open(text, encoding="utf-8") as f:
            return f.read(), os.path.abspath(text)
    return text, "<source>"


def _execute(source: str, filename: str, tree: ast.Module) -> dict[str, Any]:
    name = f"_pyxdp_prog_{next(_COUNTER)}"
    mod = _pytypes.ModuleType(name)
    mod.__file__ = filename
    sys.modules[name] = mod          # structs resolve their annotations through it
    try:
        exec(compile(tree, filename, "exec"), mod.__dict__)
    except CompileError:
        raise
    except Exception as e:
        tb = e.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        raise CompileError(f"running the module failed: {type(e).__name__}: {e}", filename,
                           line) from e
    finally:
        sys.modules.pop(name, None)
    return mod.__dict__


def parse_module(path_or_source: str | os.PathLike[str], env: dict[str, Any] | None = None
                 ) -> ModuleInfo:
    """Parse and execute a program module (``env``: an already imported module's dict)."""
    source, filename = read_source(path_or_source)
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as e:
        raise CompileError(f"syntax error: {e.msg}", filename, e.lineno, e.offset) from None
    if env is None:
        env = _execute(source, filename, tree)
    info = ModuleInfo(filename, source, tree, env)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            info.functions[node.name] = node
        elif isinstance(node, ast.AsyncFunctionDef):
            raise info.error(node, "async functions are not supported", "use a plain def")
    for name, value in env.items():
        if isinstance(value, MapDecl):
            value.name = name
            info.maps[name] = value
        elif isinstance(value, Const):
            value.name = name
            info.configs[name] = value
        elif isinstance(value, ProgramDecl) and value.name in info.functions:
            info.programs[value.name] = value
        elif isinstance(value, SubprogDecl) and value.name == name and name in info.functions:
            info.subprogs.add(name)
    return info


def format_tree(info: ModuleInfo) -> str:
    """The ``--dump-after=ast`` view: the parsed tree of every function with locations."""
    out = []
    for name, fn in info.functions.items():
        out.append(f"# {name} ({info.filename}:{fn.lineno})")
        out.append(ast.dump(fn, include_attributes=False, indent=2))
    return "\n".join(out)
