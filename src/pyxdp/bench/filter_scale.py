"""The filter at scale (issue 13): per-packet cost against the size of the block list.

Part of ``python -m pyxdp.bench.filter_speed`` (its ``scale`` rows); the pieces live here.

* Per packet, BPF_PROG_TEST_RUN (1,000,000 repeats a sample: longer samples, less
  exposed to the shared VM's bursts): a UDP packet from the last
  denied address (deny) and from an address nothing matches (miss), for pyxdp's filter at
  1, 1,000, 10,000, 100,000 and 1,000,000 denied /32s and a mixed-length list (the shape
  of a public block list) at 100,000 and 1,000,000, each with the lookup ``auto`` picks
  (a DIR-k table) and with the one it replaced (the per-length hash for /32s, the LPM
  trie for the mixed list); xdp-filter's own object
  (``xdpfilt_alw_ip.o``, loaded as xdp-tools builds it, its ``filter_ipv4`` map filled
  with the same addresses) at 1, 1,000 and 10,000; and a bare program that parses the same
  headers and drops.  Everything alternates in each round.
* Veth Mpps (a flood from the denied address, and one from an address that passes to the
  stack) with each program attached natively to the sink, counted by the kernel's run
  statistics.
* Control plane: seconds to apply 1,000,000 prefixes (``Filter.apply``, atomic) and to
  reopen the filter (``Filter.open``), peak RSS of that process (a fresh interpreter), and
  kernel memory per prefix (``memlock`` of the generation's maps, from fdinfo).
"""

from __future__ import annotations

import array
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pyxdp.apps.filter.prefixes import Prefixes
from pyxdp.apps.filter.rules import Rule, RuleSet

XDPFILT = "/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_ip.o"
DENIED = 0xC6130001                      # 198.19.0.1: the flood source, always listed
MISS = 0xC6120909                        # 198.18.9.9: never listed
SIZES = (1, 1000, 10_000, 100_000, 1_000_000)
COMPARED = (1, 1000, 10_000)             # xdp-filter too
REPEAT = 1_000_000                       # BPF_PROG_TEST_RUN repeats a sample
MIXED = (100_000, 1_000_000)
# the prefix-length shape of a public block list (FireHOL level 1/2 and Spamhaus DROP
# style: mostly hosts and /24s, some wider blocks), weights per length
MIXED_SHAPE = {32: 55, 24: 25, 16: 4, 20: 4, 22: 4, 23: 3, 28: 2, 29: 2, 30: 1}


def addresses(n: int) -> array.array[int]:
    """``n`` distinct IPv4 addresses, DENIED last (table data: only DENIED and MISS are
    ever sent as traffic, inside the bench's namespaces)."""
    rng = random.Random(n)
    out: set[int] = set()
    while len(out) < n - 1:
        a = rng.getrandbits(32)
        if a not in (DENIED, MISS) and (a >> 24) not in (0, 127, 224, 240, 255):
            out.add(a)
    ordered = array.array("I", sorted(out))
    ordered.append(DENIED)
    return ordered


def host_list(n: int) -> Prefixes:
    a = addresses(n)
    order = sorted(a)
    return Prefixes(array.array("I", order).tobytes(), bytes([32]) * n)


def mixed_list(n: int) -> Prefixes:
    """``n`` prefixes with the lengths of :data:`MIXED_SHAPE`, plus DENIED/32; none
    contains MISS."""
    rng = random.Random(n * 7 + 1)
    lengths = list(MIXED_SHAPE)
    weights = [MIXED_SHAPE[k] for k in lengths]
    keys = {DENIED << 6 | 32}
    while len(keys) < n:
        plen = rng.choices(lengths, weights)[0]
        a = rng.getrandbits(32) & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF)
        if (a >> 24) in (0, 127, 224, 240, 255) or (MISS & ~((1 << (32 - plen)) - 1)) == a:
            continue
        keys.add(a << 6 | plen)
    return Prefixes._from_keys(keys, set())


def ruleset(p: Prefixes) -> RuleSet:
    return RuleSet([Rule("list", src=p)])


def packet(src: int) -> bytes:
    from pyxdp.packets.build import ethernet, ipv4, udp
    return ethernet(ipv4(udp(bytes(18), sport=4000, dport=53),
                         src=f"{src >> 24}.{src >> 16 & 255}.{src >> 8 & 255}.{src & 255}",
                         dst="198.18.6.2"))


BARE = """
from pyxdp.compiler.lang import *

@xdp
def parse_and_drop(ctx):
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth or eth.proto != ETH_P_IP:
        return XDP_PASS
    ip = c.parse(IPv4)
    if not ip:
        return XDP_PASS
    if ip.protocol == IPPROTO_UDP:
        udp = c.parse(UDP)
        if not udp:
            return XDP_PASS
    return XDP_DROP
"""


def memlock(coll: Any, names: tuple[str, ...]) -> int:
    """Bytes the kernel accounts for these maps (``memlock:`` of their fdinfo)."""
    total = 0
    for name in names:
        fd = coll.maps[name].fd.fileno()
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("memlock:"):
                    total += int(line.split()[1])
    return total


class Loaded:
    """One program under test: its loaded collection and program."""

    def __init__(self, coll: Any, prog: Any, table: tuple[str, ...] = ()) -> None:
        self.coll, self.prog, self.table = coll, prog, table
        self.label = ""

    def ns(self, pkt: bytes) -> float:
        return float(self.prog.test_run(pkt, repeat=REPEAT).duration_ns)

    def close(self) -> None:
        self.coll.close()


def load_pyxdp(p: Prefixes, strategy: str = "auto") -> Loaded:
    """The filter's generation for one source-prefix rule; ``table``: the maps that hold
    the prefixes (their memlock is the table's kernel memory), ``label`` its layout."""
    from pyxdp.apps.filter.program import PROGRAM, load_generation
    from pyxdp.apps.filter.tables import Sizes, assign_slots, compile_tables
    from pyxdp.kernel import KernelBackend

    sizes = Sizes()
    rs = ruleset(p)
    tables = compile_tables(rs, assign_slots(rs.rules, {}, sizes.rules), sizes,
                            strategy=strategy)
    coll = load_generation(tables, sizes, KernelBackend())
    d = tables.dirs.get("src4")
    if d is not None:
        table: tuple[str, ...] = ("dir_s4_l1", "dir_s4_bits", "dir_s4_info")
        label = f"DIR-{d.k} (dir4)"
    elif tables.hash_lengths.get("src4"):
        table, label = ("hsrc4",), f"hash, {len(tables.hash_lengths['src4'])} length(s)"
    else:
        table, label = ("src4",), "LPM trie"
    lp = Loaded(coll, coll.programs[PROGRAM], table)
    lp.label = label
    return lp


def load_xdp_filter(n: int) -> Loaded:
    from pyxdp.elf import load_object
    from pyxdp.kernel import KernelBackend

    obj = load_object(XDPFILT)
    obj.maps["filter_ipv4"].max_entries = max(obj.maps["filter_ipv4"].max_entries, n)
    coll = KernelBackend().load(obj)
    from pyxdp.kernel import possible_cpus

    a = addresses(n)
    a.byteswap()                                   # its keys: addresses in network order
    ncpu = possible_cpus()
    # a per-CPU u64 per address, MAP_FLAG_SRC in its low bits (xdp-filter's layout)
    flags = array.array("Q", [1]) * (n * ncpu)
    m = coll.maps["filter_ipv4"]
    for i in range(0, n, 100_000):
        j = min(n, i + 100_000)
        m.update_batch_raw(a[i:j].tobytes(), flags[i * ncpu:j * ncpu].tobytes())
    (prog,) = [p for p in coll.programs.values()]
    return Loaded(coll, prog, ("filter_ipv4",))


def load_bare() -> Loaded:
    from pyxdp.compiler import compile_module
    from pyxdp.kernel import KernelBackend

    coll = KernelBackend().load(compile_module(BARE).spec)
    return Loaded(coll, coll.programs["parse_and_drop"])


def test_run_rows(rounds: int, log: Callable[[str], None]) -> tuple[dict[str, list[float]],
                                                                     dict[str, Any]]:
    """ns/packet samples ``"<who> <n> <deny|miss>"`` and memory facts."""
    from pyxdp.bench.harness import alternate

    deny, miss = packet(DENIED), packet(MISS)
    samples: dict[str, list[float]] = {}
    mem: dict[str, Any] = {}
    bare = load_bare()
    try:
        for n in SIZES:
            progs: dict[str, Loaded] = {}
            try:
                hosts = host_list(n)
                # the candidates: what auto picks (a DIR-k table) and the strategies it
                # replaced, on the same list in the same rounds
                for who, pfx, strategy in (("pyxdp", hosts, "auto"),
                                           ("pyxdp hash", hosts, "hash"),
                                           ("pyxdp mixed", mixed_list(n) if n in MIXED
                                            else None, "auto"),
                                           ("pyxdp mixed lpm", mixed_list(n) if n in MIXED
                                            else None, "lpm")):
                    if pfx is None:
                        continue
                    t0 = time.monotonic()
                    lp = progs[who] = load_pyxdp(pfx, strategy)
                    mem[f"{who} {n}"] = {"load_s": round(time.monotonic() - t0, 3),
                                         "table": lp.label, "maps": list(lp.table),
                                         "memlock": memlock(lp.coll, lp.table)}
                if n in COMPARED:
                    progs["xdp-filter"] = load_xdp_filter(n)
                    mem[f"xdp-filter {n}"] = {"memlock": memlock(progs["xdp-filter"].coll,
                                                                 ("filter_ipv4",))}
                sides: dict[str, Callable[[], float]] = {"bare": partial(bare.ns, deny)}
                for who, lp in progs.items():
                    assert lp.prog.test_run(deny).retval == 1, (who, n, "deny")
                    assert lp.prog.test_run(miss).retval == 2, (who, n, "miss")
                    sides[f"{who} deny"] = partial(lp.ns, deny)
                    sides[f"{who} miss"] = partial(lp.ns, miss)
                log(f"filter_scale: {n:,} prefixes, test run, {rounds} rounds")
                got = alternate(sides, rounds, warmup=1)
                for k, v in got.items():
                    samples[f"{k} {n}" if k != "bare" else f"bare {n}"] = v
            finally:
                for lp in progs.values():
                    lp.close()
    finally:
        bare.close()
    return samples, mem


def veth_rows(tb: Any, rounds: int, count: int, log: Callable[[str], None]
              ) -> dict[str, list[float]]:
    """Delivered Mpps ``"<who> <n> <deny|pass>"`` on the bench's veth (sink: veth1)."""
    from pyxdp import xdp
    from pyxdp.bench.harness import alternate
    from pyxdp.kernel import Program
    from pyxdp.trafficgen import Generator, template

    gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
    frames = {
        "deny": template("udp", src="198.19.0.1", dst=sink.ip4, smac=gen.mac,
                         dmac=sink.mac, dport=53),
        "pass": template("udp", src="198.18.9.9", dst=sink.ip4, smac=gen.mac,
                         dmac=sink.mac, dport=53)}
    # the sink answers a passed UDP packet with ICMP and would ARP for the sender first
    tb.exec("sink", ["ip", "neigh", "replace", "198.18.9.9", "lladdr", gen.mac, "dev",
                     "veth1", "nud", "permanent"])
    tb.exec("sink", ["ip", "addr", "add", "198.18.9.1/24", "dev", "veth1"], check=False)

    def rate(lp: Loaded, what: str) -> float:
        att = tb.call("sink", xdp.attach, "veth1", lp.prog, "native")
        try:
            with Program.from_id(lp.prog.info().id) as p:
                before = p.info().run_cnt

                def go() -> float:
                    with Generator(gen.ifindex, frames[what], ports=1000) as g:
                        return g.run(count, duration=10, chunk=count).seconds

                seconds = tb.call("gen", go)
                time.sleep(0.05)
                return (p.info().run_cnt - before) / seconds / 1e6
        finally:
            tb.call("sink", att.detach)

    out: dict[str, list[float]] = {}
    for n in SIZES:
        progs: dict[str, Loaded] = {}
        try:
            progs["pyxdp"] = load_pyxdp(host_list(n))
            if n in COMPARED:
                progs["xdp-filter"] = load_xdp_filter(n)
            sides = {f"{who} {what}": partial(rate, lp, what)
                     for who, lp in progs.items() for what in ("deny", "pass")}
            log(f"filter_scale: {n:,} prefixes, veth, {rounds} rounds")
            for k, v in alternate(sides, rounds, warmup=0).items():
                out[f"{k} {n}"] = v
        finally:
            for lp in progs.values():
                lp.close()
    return out


# -- the control plane at 1M, in a fresh interpreter ---------------------------------------
def control_plane(netns: str, rounds: int) -> dict[str, Any]:
    """Run :func:`_child` in a fresh interpreter: apply/reopen seconds and its peak RSS."""
    proc = subprocess.run([sys.executable, "-m", "pyxdp.bench.filter_scale", netns,
                           str(rounds)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"control-plane child failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def _child(netns: str, rounds: int) -> dict[str, Any]:
    from pyxdp.apps.filter import Filter
    from pyxdp.xdp import in_netns

    pin_root, state_root = "/sys/fs/bpf/pyxdp-bench-scale", "/run/pyxdp-bench-scale"
    t0 = time.monotonic()
    big = ruleset(host_list(1_000_000))
    build_s = time.monotonic() - t0
    small = RuleSet([Rule("list", src=Prefixes.parse(["198.19.0.1"]))])
    apply_s, open_s = [], []
    for _ in range(rounds):
        f = in_netns(netns, lambda: Filter.attach("veth1", "native", small, pin_root,
                                                  state_root=state_root))
        try:
            t0 = time.monotonic()
            in_netns(netns, f.apply, big)
            apply_s.append(time.monotonic() - t0)
            t0 = time.monotonic()
            g = in_netns(netns, lambda: Filter.open("veth1", pin_root, state_root=state_root))
            open_s.append(time.monotonic() - t0)
            assert len(g.rules().rules[0].src) == 1_000_000
            g.close()
        finally:
            in_netns(netns, f.detach)
    return {"build_s": build_s, "apply_s": apply_s, "open_s": open_s,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], int(sys.argv[2]))))
    os._exit(0)
