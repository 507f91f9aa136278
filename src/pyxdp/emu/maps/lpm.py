"""Longest-prefix-match trie (``LPM_TRIE``), keys ``{u32 prefixlen; u8 data[]}``.

Lookups (from the VM and, like the kernel's ``trie_lookup_elem``, from the control plane)
return the longest stored prefix that covers the key's first ``prefixlen`` bits; update and
delete are exact.  ``get_next_key`` walks the trie in the kernel's post-order: more specific
prefixes before the prefixes that contain them, the 0 branch before the 1 branch.
"""

from __future__ import annotations

import errno as _errno
from typing import Any

from pyxdp.emu.maps.base import Buffer, EmuMap, EmuMapError, check_flags
from pyxdp.maps import MapSpec


class LpmTrie(EmuMap):
    def __init__(self, spec: MapSpec, key_type: Any = None, value_type: Any = None,
                 ncpus: int = 1) -> None:
        if spec.key_size < 5:
            raise EmuMapError(_errno.EINVAL, "LPM trie keys need at least 5 bytes")
        self.bits = 8 * (spec.key_size - 4)
        # prefixlen -> masked address -> (canonical key, value)
        self.levels: dict[int, dict[int, tuple[bytes, Buffer]]] = {}
        self.count = 0
        super().__init__(spec, key_type, value_type, ncpus)

    def _split_key(self, key: bytes) -> tuple[int, int]:
        self._check_sizes(key)
        plen = int.from_bytes(key[:4], "little")
        if plen > self.bits:
            raise EmuMapError(_errno.EINVAL, f"prefix length {plen} > {self.bits}")
        return plen, int.from_bytes(key[4:], "big")

    def _mask(self, addr: int, plen: int) -> int:
        return addr >> (self.bits - plen) << (self.bits - plen) if plen else 0

    def _canonical(self, plen: int, addr: int) -> bytes:
        return plen.to_bytes(4, "little") + addr.to_bytes(self.bits // 8, "big")

    def _match(self, plen: int, addr: int) -> tuple[bytes, Buffer] | None:
        for level in sorted(self.levels, reverse=True):
            if level <= plen:
                hit = self.levels[level].get(self._mask(addr, level))
                if hit is not None:
                    return hit
        return None

    def _lookup(self, key: bytes) -> bytes | None:
        hit = self._match(*self._split_key(key))
        return None if hit is None else bytes(hit[1])

    def _update(self, key: bytes, value: bytes, flags: int) -> None:
        self._check_sizes(key, value)
        plen, addr = self._split_key(key)
        masked = self._mask(addr, plen)
        level = self.levels.setdefault(plen, {})
        old = level.get(masked)
        check_flags(flags, old is not None)
        if old is not None:
            old[1][:] = value
            return
        if self.count >= self.spec.max_entries:
            raise EmuMapError(_errno.ENOSPC, f"LPM trie {self.name!r} is full")
        level[masked] = (self._canonical(plen, masked), bytearray(value))
        self.count += 1

    def _delete(self, key: bytes) -> bool:
        plen, addr = self._split_key(key)
        level = self.levels.get(plen, {})
        if level.pop(self._mask(addr, plen), None) is None:
            return False
        self.count -= 1
        return True

    def _order(self) -> list[bytes]:
        def post_order(item: tuple[int, int]) -> tuple[int, ...]:
            plen, addr = item
            bits = [(addr >> (self.bits - 1 - i)) & 1 for i in range(plen)]
            return (*bits, 2)
        items = [(plen, masked) for plen, level in self.levels.items() for masked in level]
        items.sort(key=post_order)
        return [self._canonical(p, a) for p, a in items]

    def _next_key(self, key: bytes | None) -> bytes | None:
        order = self._order()
        if not order:
            return None
        if key is None:
            return order[0]
        try:
            plen, addr = self._split_key(key)
            i = order.index(self._canonical(plen, self._mask(addr, plen)))
        except (ValueError, EmuMapError):
            return order[0]
        return order[i + 1] if i + 1 < len(order) else None

    def emu_lookup(self, key: bytes, cpu: int) -> tuple[Buffer, int] | None:
        plen = int.from_bytes(key[:4], "little")
        if plen > self.bits:
            return None
        hit = self._match(plen, int.from_bytes(key[4:], "big"))
        return None if hit is None else (hit[1], 0)
