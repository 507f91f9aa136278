"""Fixtures for real-kernel tests: a private bpffs directory and a private veth pair.

Both clean up in finalizers, whatever the test did, and touch nothing they did not create.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest


@pytest.fixture
def pin_dir() -> Iterator[str]:
    """A fresh directory ``/sys/fs/bpf/pyxdpk-<random>`` (bpffs mounted if needed)."""
    from pyxdp.kernel import ensure_bpffs

    root = ensure_bpffs()
    path = os.path.join(root, f"pyxdpk-{secrets.token_hex(4)}")
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)  # unlinking pins is how bpffs removes them


@pytest.fixture
def veth() -> Iterator[tuple[str, int]]:
    """A veth pair ``pyxdpk<hex>`` / ``pyxdpk<hex>p`` in the root namespace, both up;
    yields (name, ifindex) of the first end and deletes the pair afterwards."""
    name = f"pyxdpk{secrets.token_hex(3)}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
                   check=True, capture_output=True)
    try:
        for dev in (name, name + "p"):
            subprocess.run(["ip", "link", "set", dev, "up"], check=True, capture_output=True)
        yield name, socket.if_nametoindex(name)
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
