"""Test policy shared by every suite.

* ``@pytest.mark.kernel`` tests need the real ``bpf()`` syscall (root or CAP_BPF);
  ``@pytest.mark.netns`` tests need namespaces and veth (root).  Without privileges they skip
  with a reason, but ``PYXDP_REQUIRE_KERNEL=1`` (set by ``.ci/run``) turns that skip into a
  failure, so CI can never go green by skipping the kernel.
* Every test is checked for leaked file descriptors.
* The kernel-BTF index cache goes to a directory of the run's own (removed at the end), so
  tests never leave a cache in the system's ``/var/cache/pyxdp``.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

REQUIRE_KERNEL = os.environ.get("PYXDP_REQUIRE_KERNEL") == "1"
_CACHE = None
if "PYXDP_CACHE_DIR" not in os.environ:
    _CACHE = os.environ["PYXDP_CACHE_DIR"] = tempfile.mkdtemp(prefix="pyxdp-test-cache-")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _CACHE is not None:
        shutil.rmtree(_CACHE, ignore_errors=True)


def _kernel_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (or CAP_BPF + CAP_NET_ADMIN) for bpf()"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF at /sys/kernel/btf/vmlinux"
    return None


def _netns_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces and veth pairs"
    if not os.path.exists("/proc/self/ns/net"):
        return "kernel has no network namespaces"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, probe in (("kernel", _kernel_problem), ("netns", _netns_problem)):
        if item.get_closest_marker(marker) is None:
            continue
        why = probe()
        if why is None:
            continue
        if REQUIRE_KERNEL:
            pytest.fail(f"PYXDP_REQUIRE_KERNEL=1 but {marker} test cannot run: {why}")
        pytest.skip(f"{marker} test skipped: {why}")


def _open_fds() -> set[int]:
    try:
        return {int(x) for x in os.listdir("/proc/self/fd")}
    except OSError:
        return set()


@pytest.fixture(autouse=True)
def _no_leaked_fds(request: pytest.FixtureRequest):
    """Fail a test that leaves kernel objects (fds) open behind it."""
    before = _open_fds()
    yield
    if request.node.get_closest_marker("allow_fd_leak"):
        return
    leaked = _open_fds() - before
    details = []
    for fd in sorted(leaked):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own fd)
        if target.startswith("anon_inode:bpf") or target.startswith("anon_inode:[bpf"):
            details.append(f"fd {fd} -> {target}")
    if details:
        pytest.fail("test leaked BPF file descriptors: " + ", ".join(details))


@pytest.fixture(params=[pytest.param("emulator"),
                        pytest.param("kernel", marks=pytest.mark.kernel)])
def backend(request: pytest.FixtureRequest):
    """Each backend of :mod:`pyxdp.backend` in turn: the emulator (anywhere; per-CPU maps
    as wide as the kernel's) and the kernel (a ``kernel`` test: root or CAP_BPF)."""
    if request.param == "emulator":
        from pyxdp.emu import EmuBackend
        from pyxdp.kernel import possible_cpus

        return EmuBackend(ncpus=possible_cpus())
    from pyxdp.kernel import KernelBackend

    return KernelBackend()
