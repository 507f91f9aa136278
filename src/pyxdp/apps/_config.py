"""What the apps' TOML configuration loaders share: read one file, and turn every way it
can fail into the app's own error, naming the file."""

from __future__ import annotations

import tomllib
from typing import Any

from pyxdp.errors import PyxdpError


def read_toml(path: str, error: type[PyxdpError], what: str) -> dict[str, Any]:
    """The TOML document at ``path``; an unreadable file is ``error("cannot read <what>
    config PATH: ...")``, a malformed one ``error("PATH: not valid TOML: ...")``."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise error(f"cannot read {what} config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML: {e}") from None


__all__ = ["read_toml"]
