"""``bpf_spin_lock`` in map values (issue 11): ``with v.lock:`` in the dialect.

The kernel test runs the program on both CPUs at once (two threads, each pinned to its
own CPU, each a BPF_PROG_TEST_RUN with a large repeat): under the lock every update of two
fields is seen whole, so the counters come out exact; the emulator runs the same program.
Refusals: everything the verifier refuses while a lock is held is a CompileError first."""

from __future__ import annotations

import pytest

from pyxdp.backend import Backend
from pyxdp.compiler import compile_module
from pyxdp.errors import CompileError

SRC = """
from pyxdp.compiler.lang import *

class Rec(Struct):
    count: u64
    lock: SpinLock
    total: u64

recs = ArrayMap[u32, Rec](max_entries=1)

@xdp
def prog(ctx):
    v = recs.lookup(0)
    if not v:
        return XDP_ABORTED
    with v.lock:
        v.count += 1
        v.total += v.count          # needs both fields of the same moment
    return XDP_PASS
"""


def test_lock_serialises_updates(backend: Backend) -> None:
    obj = compile_module(SRC)
    with backend.load(obj.spec) as coll:
        for _ in range(5):
            assert coll.programs["prog"].run_packet(bytes(64)).verdict.name == "PASS"
        rec = obj.typed_maps(coll)["recs"][0]
        assert (rec.count, rec.total) == (5, 15)
        assert rec.lock.val == 0                       # released after every run


@pytest.mark.kernel
def test_lock_holds_across_two_cpus() -> None:
    from cpus import on_two_cpus

    from pyxdp.kernel import load_collection

    obj = compile_module(SRC)
    n = 200_000
    coll = load_collection(obj.spec)
    try:
        prog = coll.programs["prog"]
        on_two_cpus(lambda: prog.test_run(bytes(64), repeat=n))
        rec = obj.typed_maps(coll)["recs"][0]
        total = 2 * n
        assert rec.count == total
        assert rec.total == total * (total + 1) // 2
    finally:
        coll.close()


def test_map_value_with_a_lock_carries_its_btf() -> None:
    """The kernel finds bpf_spin_lock through the value's BTF: the map is typed."""
    spec = compile_module(SRC).spec
    m = spec.maps["recs"]
    assert m.value_type_id and m.key_type_id
    assert spec.btf.types[m.value_type_id].name == "Rec"
    assert any(t.name == "bpf_spin_lock" and t.size == 4 for t in spec.btf.types[1:])


@pytest.mark.parametrize("body,message", [
    ("with v.lock:\n    return XDP_DROP", "return inside a locked section"),
    ("with v.lock:\n    x = ktime_get_ns()", "while a bpf_spin_lock is held"),
    ("with v.lock:\n    recs.update(0, v)", "while a bpf_spin_lock is held"),
    ("for i in range(3):\n    with v.lock:\n        break", "would leave a locked section"),
    ("with v.lock:\n    with v.lock:\n        pass", "nested with"),
    ("x = v.lock.val", "only used as"),
    ("l = v.lock", "only used as"),
    ("with v.lock as l:\n    pass", "without 'as'"),
    ("with v:\n    pass", "with statements take a SpinLock"),
    ("r = Rec()\nwith r.lock:\n    pass", "in a map value"),
])
def test_refusals(body: str, message: str) -> None:
    head, _, _ = SRC.partition("    with v.lock:")
    src = head + "".join(f"    {line}\n" for line in body.splitlines()) + "    return XDP_PASS\n"
    with pytest.raises(CompileError, match=message):
        compile_module(src)


def test_break_inside_an_inner_loop_is_fine(backend: Backend) -> None:
    src = SRC.replace("        v.count += 1\n", "        for i in range(8):\n"
                      "            if i == 3:\n                break\n"
                      "            v.count += 1\n")
    obj = compile_module(src)
    with backend.load(obj.spec) as coll:
        coll.programs["prog"].run_packet(bytes(64))
        rec = obj.typed_maps(coll)["recs"][0]
        assert (rec.count, rec.total) == (3, 3)
