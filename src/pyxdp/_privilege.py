"""Whether this process may use the kernel side: its effective capabilities, not its uid.

``root`` without capabilities (a container, ``setpriv --bounding-set=-all``) cannot create
namespaces or load BPF; a non-root user with ``CAP_BPF``/``CAP_NET_ADMIN`` file
capabilities can load and attach.  Reads ``/proc/self/status`` only: no syscalls.
"""

from __future__ import annotations

# capability numbers of linux/capability.h (not BPF ABI)
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_BPF = 39


def effective_caps() -> int:
    """The effective capability mask (0 when it cannot be read)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def has_caps(*caps: int) -> bool:
    mask = effective_caps()
    return all(mask >> c & 1 for c in caps)


def can_run_test_beds() -> bool:
    """Namespaces, veth and XDP: what the kernel demo and test beds need."""
    return has_caps(CAP_SYS_ADMIN, CAP_NET_ADMIN)
