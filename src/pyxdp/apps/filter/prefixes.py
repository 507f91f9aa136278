"""Packed prefix sets: a rule's ``src``/``dst`` as four byte strings, never an object each.

IPv4 prefixes are an ``array('I')`` of network addresses (host order) and a byte string of
lengths; IPv6 prefixes 16 bytes each (network order) and their lengths.  A set is unique
and sorted (so two rules with the same prefixes compare equal), host bits are clear, and
it goes from a million-line list to the kernel's map batch update, and to and from the
state file, as these four blobs: parsing makes transient ints and strings per line, but
no ``ipaddress`` object, and reopening a saved filter checks a digest, not every prefix.
Iterating yields ``ipaddress`` networks, for the few places that show prefixes to people.
"""

from __future__ import annotations

import array
import base64
import hashlib
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAPPED = b"\0" * 10 + b"\xff\xff"
SHOWN = 64          # prefix sets up to this size are saved as text, larger ones packed


class PrefixError(ValueError):
    """A bad entry: ``index`` is its 0-based position in the input."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def _parse_one(text: str, index: int, strict: bool) -> tuple[int, int, bool]:
    """(address as int, length, is IPv6) of one prefix text."""
    if "%" in text:
        raise PrefixError(f"{text!r} has a scope (%zone): a zone is not part of a packet's"
                          " address; write the address without it", index)
    addr, slash, plen_text = text.partition("/")
    v6 = ":" in addr
    bits = 128 if v6 else 32
    try:
        raw = socket.inet_pton(socket.AF_INET6 if v6 else socket.AF_INET, addr)
    except OSError:
        raise PrefixError(f"not an address or prefix: {text!r}", index) from None
    if v6 and raw[:12] == _MAPPED:
        mapped = ipaddress.IPv4Address(raw[12:])
        raise PrefixError(f"{text!r} is an IPv4-mapped IPv6 address, which never matches"
                          f" IPv4 traffic at XDP; write {mapped} instead", index)
    if slash:
        if not plen_text.isdigit() or not plen_text.isascii() or len(plen_text) > 3:
            raise PrefixError(f"bad prefix length in {text!r}", index)
        plen = int(plen_text)
        if plen > bits:
            raise PrefixError(f"prefix length {plen} in {text!r}: at most {bits}", index)
    else:
        plen = bits
    value = int.from_bytes(raw, "big")
    host = (1 << (bits - plen)) - 1
    if value & host:
        if strict:
            fixed = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
            raise PrefixError(f"bad prefix {text!r}: has host bits set (did you mean"
                              f" {fixed}?)", index)
        value &= ~host
    return value, plen, v6


class Prefixes:
    """An immutable, hashable, sorted set of IPv4 and IPv6 prefixes, packed."""

    __slots__ = ("_hash", "a4", "a6", "l4", "l6")

    def __init__(self, a4: bytes = b"", l4: bytes = b"", a6: bytes = b"", l6: bytes = b""
                 ) -> None:
        if len(a4) != 4 * len(l4) or len(a6) != 16 * len(l6):
            raise ValueError("packed prefixes: address and length counts differ")
        if (l4 and max(l4) > 32) or (l6 and max(l6) > 128):
            raise ValueError("packed prefixes: a prefix length is out of range")
        self.a4, self.l4, self.a6, self.l6 = bytes(a4), bytes(l4), bytes(a6), bytes(l6)
        self._hash: int | None = None

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def parse(cls, texts: Iterable[str], strict: bool = True) -> Prefixes:
        """From prefix texts (``198.18.0.0/16``, ``2001:db8::1``); ``strict``: host bits
        set are an error (rule files), else cleared (address lists)."""
        v4: set[int] = set()
        v6: set[int] = set()
        for i, text in enumerate(texts):
            value, plen, is6 = _parse_one(text, i, strict)
            if is6:
                v6.add(value << 8 | plen)
            else:
                v4.add(value << 6 | plen)
        return cls._from_keys(v4, v6)

    @classmethod
    def from_networks(cls, nets: Iterable[Any]) -> Prefixes:
        """From ``ipaddress`` networks (or prefix strings), host bits must be clear."""
        return cls.parse((str(n) for n in nets), strict=True)

    @classmethod
    def _from_keys(cls, v4: set[int], v6: set[int]) -> Prefixes:
        k4 = sorted(v4)
        a4 = array.array("I", [k >> 6 for k in k4])
        l4 = bytes(k & 63 for k in k4)
        k6 = sorted(v6)
        a6 = b"".join((k >> 8).to_bytes(16, "big") for k in k6)
        l6 = bytes(k & 255 for k in k6)
        return cls(a4.tobytes(), l4, a6, l6)

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.l4) + len(self.l6)

    def __bool__(self) -> bool:
        return len(self) > 0

    def addrs4(self) -> array.array[int]:
        a = array.array("I")
        a.frombytes(self.a4)
        return a

    def versions(self) -> set[int]:
        return ({4} if self.l4 else set()) | ({6} if self.l6 else set())

    def __iter__(self) -> Iterator[Network]:
        for addr, plen in zip(self.addrs4(), self.l4, strict=True):
            yield ipaddress.IPv4Network((addr, plen))
        for i, plen in enumerate(self.l6):
            yield ipaddress.IPv6Network((self.a6[16 * i:16 * i + 16], plen))

    def __getitem__(self, index: slice) -> list[Network]:
        if not isinstance(index, slice):
            raise TypeError("Prefixes take slices: list(p)[i] for one")
        start, stop, step = index.indices(len(self))
        out = []
        for i, net in enumerate(self):
            if i >= stop:
                break
            if i >= start and (i - start) % step == 0:
                out.append(net)
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list | tuple):
            if not all(isinstance(n, ipaddress.IPv4Network | ipaddress.IPv6Network)
                       for n in other):
                return False          # strings are not prefixes: a hand-built rule's bug
            try:
                other = Prefixes.from_networks(other)
            except (PrefixError, ValueError):
                return False
        if not isinstance(other, Prefixes):
            return NotImplemented
        return (self.a4, self.l4, self.a6, self.l6) == (other.a4, other.l4, other.a6,
                                                        other.l6)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.a4, self.l4, self.a6, self.l6))
        return self._hash

    def __repr__(self) -> str:
        shown = ", ".join(str(n) for n in self[:3])
        more = f", ... ({len(self)} in all)" if len(self) > 3 else ""
        return f"Prefixes([{shown}{more}])"

    # -- the state file ---------------------------------------------------------------------
    def digest(self) -> str:
        h = hashlib.sha256()
        for blob in (self.a4, self.l4, self.a6, self.l6):
            h.update(len(blob).to_bytes(8, "little"))
            h.update(blob)
        return h.hexdigest()

    def to_state(self) -> Any:
        """Text for a small set (readable state files); the four blobs, base64, and their
        digest for a large one."""
        if len(self) <= SHOWN:
            return [str(n) for n in self]
        return {"packed": {k: base64.b64encode(getattr(self, k)).decode("ascii")
                           for k in ("a4", "l4", "a6", "l6")}, "sha256": self.digest()}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Prefixes:
        """A packed set as :meth:`to_state` wrote it; the digest must match (the state is
        ours: no prefix is re-validated one by one)."""
        try:
            blobs = {k: base64.b64decode(d["packed"][k], validate=True)
                     for k in ("a4", "l4", "a6", "l6")}
            p = cls(**blobs)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed packed prefixes ({e})") from None
        if p.digest() != d.get("sha256"):
            raise ValueError("packed prefixes do not match their digest (a damaged state)")
        return p


__all__ = ["PrefixError", "Prefixes"]
