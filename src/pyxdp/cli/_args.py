"""Argument types shared by the command groups: numbers with their valid range, files.

Each is an ``argparse`` ``type=``: a bad value is an argument error (exit 2, usage and one
line naming the option's problem), never a traceback from deeper down.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

#: more digits than any count, port or size could need; ``int()`` of longer text is slow
MAX_DIGITS = 30


def int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An integer in ``[lo, hi]`` (``hi=None``: no upper bound), written in any base
    ``int(text, 0)`` takes."""

    def parse(text: str) -> int:
        t = text.strip()
        if len(t) > MAX_DIGITS or not t.isascii():
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}")
        try:
            value = int(t, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_range(lo: float, hi: float | None = None, *,
                open_lo: bool = False) -> Callable[[str], float]:
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``open_lo``)."""

    def parse(text: str) -> float:
        t = text.strip()
        if len(t) > MAX_DIGITS or not t.isascii():
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}")
        try:
            value = float(t)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if value < lo or (open_lo and value == lo) or (hi is not None and value > hi):
            low = f"more than {lo:g}" if open_lo else f"at least {lo:g}"
            span = f"{low} and at most {hi:g}" if hi is not None else low
            raise argparse.ArgumentTypeError(f"must be {span}, got {value:g}")
        return value

    parse.__name__ = "float"
    return parse


PORT = int_range(0, 65535)
COUNT = int_range(1)
SECONDS = float_range(0, open_lo=True)           # a positive duration
SECONDS_OR_ZERO = float_range(0)                 # 0: "not at all" / "no bound"


def input_file(text: str) -> str:
    """A path that names an existing regular file (``-`` is standard input)."""
    if text == "-":
        return text
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, not a file")
    return text
