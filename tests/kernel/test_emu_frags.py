"""Multi-buffer frames in the emulator, held to what ``BPF_PROG_TEST_RUN`` does on the
running kernel (measured on 6.18): a frame gets at most 3520 bytes in the linear part (a
4 KiB page minus 256 bytes of headroom and 320 of ``skb_shared_info``), the rest in
page-sized frags (17 at most; a longer frame is refused with ENOMEM), and this is the same
for ``xdp.frags`` programs and plain ones.  ``data_end`` stops at the linear part;
``bpf_xdp_get_buff_len``, ``bpf_xdp_load_bytes``/``store_bytes`` (offsets past 0xffff:
EFAULT) and ``bpf_xdp_adjust_tail`` (growth within the last frag's page, shrinking that
frees frags, 14 bytes minimum) see the whole frame.

``tests/data/obj/frags_tail.o`` probes all of this; its ``.rodata`` knobs pick the tail
delta and the probed offset, its ``.bss`` records what the helpers returned.
"""

from __future__ import annotations

import copy
import errno
from pathlib import Path
from typing import Any

import pytest

from pyxdp.abi import XdpAction
from pyxdp.backend import Backend
from pyxdp.elf import load_object, set_variable
from pyxdp.errors import BpfError
from pyxdp.spec import ObjectSpec

OBJ = Path(__file__).parent.parent / "data" / "obj"
PROGS = ("probe_frags", "probe_linear")
FIELDS = ("linear_len", "len_before", "tail_rc", "len_after", "load_rc", "loaded",
          "store_rc")
LINEAR, PAGE, MAX_FRAME = 3520, 4096, 3520 + 17 * 4096


def _frame(size: int) -> bytes:
    return bytes((i * 7 + i // 251) & 0xFF for i in range(size))


def _obj(prog: str, delta: int, off: int) -> ObjectSpec:
    obj = copy.deepcopy(load_object(OBJ / "frags_tail.o").only(prog))
    set_variable(obj, "tail_delta", delta)
    set_variable(obj, "probe_off", off & 0xFFFFFFFF)
    return obj


def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _run(backend: Backend, prog: str, size: int, delta: int, off: int
         ) -> tuple[int, bytes, dict[str, int]]:
    with backend.load(_obj(prog, delta, off)) as coll:
        res = coll.programs[prog].run_packet(_frame(size))
        seen = {k: coll.variables[k].value for k in FIELDS}
    for k in ("tail_rc", "load_rc", "store_rc"):
        seen[k] = _signed(seen[k])
    return res.retval, res.packet, seen


def _expected_tail(size: int, delta: int) -> int:
    """The kernel's bpf_xdp_adjust_tail result, from its source, for an untouched frame."""
    if size <= LINEAR:                        # linear frame: tailroom to the page's end
        return -errno.EINVAL if size + delta > LINEAR or size + delta < 14 else 0
    if delta > 0:                             # the last frag's page
        last = (size - LINEAR) % PAGE or PAGE
        return -errno.EINVAL if delta > PAGE - last else 0
    return -errno.EINVAL if -delta > size - 14 else 0


CASES = [(size, delta, off) for size in (3000, 3520, 3521, 5000, 9000)
         for delta, off in ((0, 0), (100, size - 8), (-100, size - 10), (2616, 3516),
                            (2617, 3516), (-(size - 14), 0), (-(size - 13), 0))]


@pytest.mark.parametrize("prog", PROGS)
@pytest.mark.parametrize(("size", "delta", "off"), CASES)
def test_frame_model(backend: Backend, prog: str, size: int, delta: int, off: int) -> None:
    retval, packet, seen = _run(backend, prog, size, delta, off)
    frame = _frame(size)
    assert seen["linear_len"] == min(size, LINEAR)
    assert seen["len_before"] == size
    want_rc = _expected_tail(size, delta)
    assert seen["tail_rc"] == want_rc
    assert retval == (XdpAction.DROP if want_rc else XdpAction.PASS)
    new_len = size + delta if delta and not want_rc else size
    assert seen["len_after"] == len(packet) == new_len
    load_ok = off + 4 <= size
    assert seen["load_rc"] == (0 if load_ok else -errno.EINVAL)
    if load_ok:
        assert seen["loaded"] == int.from_bytes(frame[off:off + 4], "little")
    store_ok = off + 8 <= size
    assert seen["store_rc"] == (0 if store_ok else -errno.EINVAL)
    want = bytearray(frame)
    if store_ok:
        want[off + 4:off + 8] = b"ABCD"
    want = want[:new_len] + bytes(max(0, new_len - size))
    assert packet == bytes(want)


def test_offsets_past_0xffff_fault(backend: Backend) -> None:
    _, _, seen = _run(backend, "probe_frags", 70000, 0, 0x10000)
    assert seen["load_rc"] == -errno.EFAULT
    assert seen["store_rc"] == -errno.EFAULT
    _, packet, seen = _run(backend, "probe_frags", 70000, -4097, 0xFFFF - 3)
    assert seen["load_rc"] == 0 and seen["store_rc"] == -errno.EFAULT
    assert len(packet) == seen["len_after"] == 70000 - 4097


def test_longest_frame_and_one_byte_more(backend: Backend) -> None:
    retval, packet, seen = _run(backend, "probe_frags", MAX_FRAME, 1, 0)
    assert seen["tail_rc"] == -errno.EINVAL        # the 17th frag is a full page
    assert retval == XdpAction.DROP and len(packet) == MAX_FRAME
    with pytest.raises((BpfError, ValueError)) as e:
        _run(backend, "probe_frags", MAX_FRAME + 1, 0, 0)
    if isinstance(e.value, BpfError):
        assert e.value.errno == errno.ENOMEM


@pytest.mark.kernel
@pytest.mark.parametrize("prog", PROGS)
@pytest.mark.parametrize(("size", "delta"), [(3600, 600), (5000, 2616), (5000, -1500),
                                             (9000, 1), (9000, -5481), (3521, -3507)])
def test_kernel_and_emulator_agree(prog: str, size: int, delta: int) -> None:
    from pyxdp.emu import EmuBackend
    from pyxdp.kernel import KernelBackend

    got: list[Any] = [_run(b, prog, size, delta, size // 2)
                      for b in (KernelBackend(), EmuBackend())]
    assert got[0] == got[1]
