"""Guards: pure layers never pull in the kernel layer, nothing touches the kernel at import,
and the public API changes only on purpose (a committed snapshot).

Update the snapshot after an intended API change with::

    python tests/unit/test_layers_and_api.py --update
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PURE = ["pyxdp.isa", "pyxdp.asm", "pyxdp.btf", "pyxdp.elf", "pyxdp.emu", "pyxdp.maps",
        "pyxdp.spec", "pyxdp.packets", "pyxdp.compiler", "pyxdp.asm.conformance", "pyxdp.errors"]
PUBLIC = ["pyxdp.isa", "pyxdp.asm", "pyxdp.btf", "pyxdp.elf", "pyxdp.emu", "pyxdp.maps",
          "pyxdp.spec", "pyxdp.compiler", "pyxdp.kernel", "pyxdp.xdp", "pyxdp.testbed",
          "pyxdp.trafficgen", "pyxdp.errors", "pyxdp.apps.filter"]
SNAPSHOT = Path(__file__).parent / "data" / "public_api.txt"


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
