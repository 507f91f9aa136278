"""libbpf as the reference: ``bpftool prog loadall`` in a private mount namespace.

``root`` (a fresh bpffs directory of the test) stands in for /sys/fs/bpf, so every pin
bpftool makes, ``pinning = BY_NAME`` ones included, lands there and nowhere else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import pytest

from pyxdp.kernel import Map, Program


@dataclass
class Reference:
    ok: bool
    stderr: str
    tags: dict[str, str]            # program name -> kernel tag (when ok)
    returncode: int = 0             # bpftool's exit status; negative: killed by that signal
    infos: dict[str, Any] = field(default_factory=dict)   # program name -> ProgInfo
    map_infos: dict[str, Any] = field(default_factory=dict)   # map pin name -> MapInfo

    @property
    def reason(self) -> str:
        """libbpf's own lines, the way it explains a refusal."""
        lines = [ln for ln in self.stderr.splitlines() if ln.startswith(("libbpf:", "Error:"))]
        return " | ".join(lines)


def bpftool_loadall(obj_path: str, root: str, prog_type: str | None = None) -> Reference:
    """Load ``obj_path`` with bpftool/libbpf, read the tags of what it pinned, remove the
    pins again."""
    for tool in ("bpftool", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    typ = f"type {prog_type}" if prog_type else ""
    script = (f"mount --bind {root} /sys/fs/bpf && exec bpftool prog loadall {obj_path}"
              f" /sys/fs/bpf/progs {typ} pinmaps /sys/fs/bpf")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120)
    tags: dict[str, str] = {}
    infos: dict[str, Any] = {}
    map_infos: dict[str, Any] = {}
    progs = os.path.join(root, "progs")
    try:
        if r.returncode == 0:
            for name in sorted(os.listdir(progs)):
                with Program.from_pin(os.path.join(progs, name)) as p:
                    infos[name] = p.info()
                    tags[name] = infos[name].tag
            for name in sorted(os.listdir(root)):           # pinmaps: every map, by name
                path = os.path.join(root, name)
                if not os.path.isdir(path):
                    with Map.from_pin(path) as m:
                        map_infos[name] = m.info()
    finally:
        for entry in os.listdir(root):
            path = os.path.join(root, entry)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
    return Reference(r.returncode == 0, r.stderr, tags, r.returncode, infos, map_infos)
