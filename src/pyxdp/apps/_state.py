"""What every app's control plane needs for its state directory: a lock that survives the
directory being removed under a waiter, and crash-safe file replacement."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator


@contextlib.contextmanager
def locked(state_dir: str, *, create: bool) -> Iterator[None]:
    """Hold ``<state_dir>/lock`` (``flock``).  A detach removes the directory, lock file
    included, while holding it: a waiter that then gets the lock on the removed file
    retries on the current one (``create``) or reports the directory gone
    (``FileNotFoundError``)."""
    path = os.path.join(state_dir, "lock")
    while True:
        if create:
            os.makedirs(state_dir, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current: int | None = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                yield
                return
            if not create:
                raise FileNotFoundError(path)
        finally:
            os.close(fd)


def write_atomic(path: str, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, never
    a torn one, and no temporary file behind on error."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = ["locked", "write_atomic"]
