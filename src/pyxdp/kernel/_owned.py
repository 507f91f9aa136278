"""What every live kernel object (map, program, link) does alike: own one :class:`Fd`,
close it (also as a context manager), and pin to / unpin from bpffs."""

from __future__ import annotations

from typing import Any, Self

from pyxdp.kernel._fd import Fd
from pyxdp.kernel._pin import obj_pin, unpin


class OwnedObject:
    """Mixin; the class sets ``self.fd`` and ``self._pinned = None`` in ``__init__``."""

    fd: Fd
    _pinned: str | None

    def close(self) -> None:
        """Close our fd; the kernel object lives on while pins, links or others hold it."""
        self.fd.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def pin(self, path: str) -> None:
        """Pin the object at ``path`` on a bpf filesystem (BPF_OBJ_PIN)."""
        obj_pin(self.fd, path)
        self._pinned = path

    def unpin(self, path: str | None = None) -> None:
        """Remove the pin at ``path`` (default: where :meth:`pin` put it)."""
        target = path or self._pinned
        if target is None:
            raise self._not_pinned()
        unpin(target)
        if target == self._pinned:
            self._pinned = None

    def _not_pinned(self) -> Exception:
        return ValueError(f"{type(self).__name__.lower()} is not pinned")
