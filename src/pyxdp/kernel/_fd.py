"""Owned file descriptors: every live kernel object (map, program, link, BTF) holds one.

A bare ``int`` fd has no owner, so it leaks or gets closed twice.  :class:`Fd` closes
exactly once (``close()`` is idempotent, ``__del__`` is the safety net) and refuses use
after close instead of silently reaching some unrelated file that reused the number.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Any


class Fd:
    """An owned file descriptor. ``int(fd)`` and ``fd.fileno()`` give the number."""

    __slots__ = ("__weakref__", "_raw")

    def __init__(self, raw: int) -> None:
        if raw < 0:
            raise ValueError(f"invalid file descriptor {raw}")
        self._raw = raw

    def fileno(self) -> int:
        if self._raw < 0:
            raise ValueError("file descriptor is closed")
        return self._raw

    __int__ = fileno
    __index__ = fileno

    @property
    def closed(self) -> bool:
        return self._raw < 0

    def close(self) -> None:
        """Close the fd; calling it again does nothing."""
        raw, self._raw = self._raw, -1
        if raw >= 0:
            os.close(raw)

    def detach(self) -> int:
        """Give up ownership and return the raw number (the caller must close it)."""
        raw = self.fileno()
        self._raw = -1
        return raw

    def dup(self) -> Fd:
        """An independent owned duplicate (close-on-exec, like every bpf() fd)."""
        return Fd(fcntl.fcntl(self.fileno(), fcntl.F_DUPFD_CLOEXEC, 0))

    def __enter__(self) -> Fd:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()

    def __repr__(self) -> str:
        return "<Fd closed>" if self._raw < 0 else f"<Fd {self._raw}>"


def fd_number(obj: Any) -> int:
    """The raw fd of an :class:`Fd`, of an object owning one (``.fd``), or of an ``int``."""
    if isinstance(obj, int):
        return obj
    inner = getattr(obj, "fd", obj)
    if isinstance(inner, Fd):
        return inner.fileno()
    if isinstance(inner, int):
        return inner
    raise TypeError(f"expected an fd, an Fd or an object owning one, got {type(obj).__name__}")


__all__ = ["Fd", "fd_number"]
