"""Guards: pure layers never pull in the kernel layer, nothing touches the kernel at import,
and the public API changes only on purpose (a committed snapshot).

Update the snapshot after an intended API change with::

    python tests/unit/test_layers_and_api.py --update
"""

from __future__ import annotations

import ast
import importlib
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PURE = ["pyxdp.isa", "pyxdp.asm", "pyxdp.btf", "pyxdp.elf", "pyxdp.emu", "pyxdp.maps",
        "pyxdp.chain", "pyxdp.cbpf", "pyxdp.spec", "pyxdp.packets", "pyxdp.compiler", "pyxdp.asm.conformance", "pyxdp.errors",
        "pyxdp.abi", "pyxdp.backend", "pyxdp.asm.programs"]
# what a pure module may never import, at module level or inside a function
NOT_PURE = ("pyxdp.kernel", "pyxdp.xdp", "pyxdp.testbed", "pyxdp.trafficgen", "pyxdp.cli",
            "pyxdp.apps", "pyxdp.bench", "pyxdp.afxdp")
PUBLIC = ["pyxdp.abi", "pyxdp.backend", "pyxdp.isa", "pyxdp.asm", "pyxdp.btf", "pyxdp.elf",
          "pyxdp.emu", "pyxdp.maps", "pyxdp.spec", "pyxdp.compiler", "pyxdp.kernel",
          "pyxdp.xdp", "pyxdp.testbed", "pyxdp.trafficgen", "pyxdp.errors", "pyxdp.apps.filter",
          "pyxdp.chain", "pyxdp.cbpf", "pyxdp.afxdp"]
SNAPSHOT = Path(__file__).parent / "data" / "public_api.txt"
SRC = Path(__file__).parent.parent.parent / "src"


def _pure_files(src: Path) -> list[Path]:
    out = []
    for mod in PURE:
        path = src.joinpath(*mod.split("."))
        out.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")])
    return out


def _module_of(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every module an AST node imports (``from . import x`` resolved against ``module``;
    ``importlib.import_module("...")`` and ``__import__("...")`` with a literal too)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if is_package else module.split(".")[:-1]
            pkg = pkg[:len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        return [base] + [f"{base}.{a.name}" for a in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and (
            isinstance(node.args[0].value, str)):
        fn = node.func
        name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
        if name in ("import_module", "__import__"):
            return [node.args[0].value]
    return []


def layering_violations(src: Path) -> list[str]:
    """``file:line imports X`` for every import of a non-pure layer in a pure module,
    wherever it is written (module level, function body, try block, TYPE_CHECKING)."""
    bad = []
    for path in _pure_files(src):
        module = _module_of(src, path)
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [n for n in _imported(node, module, path.name == "__init__.py")
                     if any(n == p or n.startswith(p + ".") for p in NOT_PURE)]
            if names:    # one report per import statement
                bad.append(f"{path.relative_to(src)}:{getattr(node, 'lineno', 0)}"
                           f" imports {names[0]}")
    return bad


def test_pure_layers_never_import_the_kernel_layer_anywhere() -> None:
    """The AST guard: an import inside a function counts (the runtime check below cannot
    see one that has not run yet)."""
    assert layering_violations(SRC) == []


@pytest.mark.parametrize("planted", [
    "def helper():\n    import pyxdp.kernel\n",
    "def helper():\n    from pyxdp.kernel import Map\n    return Map\n",
    "class C:\n    def m(self):\n        from pyxdp import xdp\n        return xdp\n",
    "def helper():\n    from ..kernel import loader\n    return loader\n",
    "import importlib\n\ndef helper():\n    return importlib.import_module('pyxdp.kernel')\n",
    "try:\n    from pyxdp.apps.filter import Filter\nexcept ImportError:\n    Filter = None\n",
])
def test_the_guard_catches_a_planted_in_function_import(tmp_path: Path, planted: str) -> None:
    fake = tmp_path / "src"
    shutil.copytree(SRC / "pyxdp", fake / "pyxdp",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    assert layering_violations(fake) == []
    target = fake / "pyxdp" / "compiler" / "planted.py"
    target.write_text(planted)
    found = layering_violations(fake)
    assert len(found) == 1 and found[0].startswith("pyxdp/compiler/planted.py:"), found


@pytest.mark.parametrize("module", PURE)
def test_pure_layers_do_not_import_the_kernel_layer(module: str) -> None:
    code = (f"import sys, {module}; bad = sorted(m for m in sys.modules if m.startswith("
            "('pyxdp.kernel', 'pyxdp.xdp', 'pyxdp.testbed', 'pyxdp.trafficgen', "
            "'pyxdp.cli', 'pyxdp.apps.filter.control'))); print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"


def test_importing_the_kernel_layer_creates_no_kernel_object() -> None:
    """Nothing touches the kernel at import: no BPF object (fd) exists afterwards, and the
    imports work without the bpf() syscall being usable (it is never made)."""
    code = ("import os\n"
            "import pyxdp.kernel, pyxdp.xdp, pyxdp.trafficgen, pyxdp.testbed, pyxdp.cli, "
            "pyxdp.apps.filter\n"
            "links = [os.readlink(f'/proc/self/fd/{fd}') for fd in os.listdir('/proc/self/fd')"
            " if os.path.exists(f'/proc/self/fd/{fd}')]\n"
            "print(sum('bpf' in link for link in links))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0", f"{out.stdout.strip()} BPF objects after import"


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def _own_members(cls: type) -> dict[str, object]:
    """Members defined by pyxdp classes in the MRO (inherited ones included, so moving a
    method to a base class is not an API change)."""
    out: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("pyxdp"):
            out.update(vars(klass))
    return out


def snapshot() -> str:
    lines = []
    for modname in PUBLIC:
        mod = importlib.import_module(modname)
        for name in sorted(getattr(mod, "__all__", [])):
            obj = getattr(mod, name)
            kind = "class" if inspect.isclass(obj) else "def" if callable(obj) else "value"
            sig = _signature(obj) if kind == "def" else ""
            lines.append(f"{modname}.{name} {kind}{sig}")
            if inspect.isclass(obj):
                for attr, member in sorted(_own_members(obj).items()):
                    if attr.startswith("_") or (not callable(member) and not isinstance(
                            member, property | classmethod | staticmethod)):
                        continue
                    fn = member.__func__ if isinstance(member, classmethod | staticmethod) \
                        else member
                    sig = "" if isinstance(member, property) else _signature(fn)
                    lines.append(f"{modname}.{name}.{attr}{sig}")
    return "\n".join(lines) + "\n"


def test_public_api_matches_the_snapshot() -> None:
    current = snapshot()
    expected = SNAPSHOT.read_text()
    if current != expected:
        import difflib

        diff = "\n".join(difflib.unified_diff(expected.splitlines(), current.splitlines(),
                                              "snapshot", "now", lineterm="", n=0))
        pytest.fail("public API changed; if intended, run `python tests/unit/"
                    f"test_layers_and_api.py --update`:\n{diff}")


if __name__ == "__main__" and "--update" in sys.argv:
    SNAPSHOT.write_text(snapshot())
    print(f"wrote {SNAPSHOT}")
