"""pyxdp filter next to xdp-filter (xdp-tools), side by side on one veth bed (needs root).

* Drop rate: a flood from one denied source address (xdp-filter has no prefixes), random
  source ports, each filter attached natively to the sink; packets counted with the
  kernel's per-program run statistics (BPF_ENABLE_STATS), so neither program is changed.
  Each round attaches one filter, floods, detaches; the two alternate.
* Pass rate is left out on purpose: passed frames go to the stack, which is the bottleneck.
* Rule changes: pyxdp applies 100,000 prefixes atomically in one generation; xdp-filter
  adds addresses one `xdp-filter ip` command at a time (measured on 1,000 per round, per
  address, and scaled to 100,000).  Alternating rounds, a fresh filter each round.
* Feature cost: xlated instructions and BPF_PROG_TEST_RUN ns/packet of the filter with one
  prefix rule vs every feature in use (only features in use cost cycles), alternating.
* Scale (:mod:`pyxdp.bench.filter_scale`): per packet and veth Mpps from 1 to 1,000,000
  denied prefixes, pyxdp vs xdp-filter up to 10,000, a bare parse-and-drop program; the
  control plane applying and reopening 1,000,000 prefixes; kernel memory per prefix.

Writes ``bench/results/filter_speed.json`` and ``.md``.
``python -m pyxdp.bench.filter_speed [--rounds 5]``
"""

from __future__ import annotations

import argparse
import array
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pyxdp import xdp
from pyxdp.apps.filter import Filter, Prefixes, Rule, RuleSet, parse_rules_text
from pyxdp.bench import harness
from pyxdp.bench.filter_scale import REPEAT
from pyxdp.bench.harness import LOWER, Report, alternate, fmt, stderr_log
from pyxdp.kernel import KernelBackend, Program, enable_stats
from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

NAME = "filter_speed"
DENIED = "198.19.0.1"
COUNT = 3_000_000
PREFIXES = 100_000
XDP_FILTER_ADDS = 1000
PIN_ROOT = "/sys/fs/bpf/pyxdp-bench-filter"
STATE_ROOT = "/run/pyxdp-bench-filter"


def bed() -> Testbed:
    tb = Testbed()
    for ns in ("gen", "sink"):
        tb.namespace(ns)
        tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
    tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.6.1/24", "198.18.6.2/24"))
    return tb


def flood_rate(tb: Testbed, prog_id: int, count: int) -> tuple[float, int]:
    """Frames the sink program ran on per second of generator time, and how many."""
    gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
    frame = template("udp", src=DENIED, dst=sink.ip4, smac=gen.mac, dmac=sink.mac, dport=53)
    with Program.from_id(prog_id) as p:
        before = p.info().run_cnt

        def go() -> float:
            with Generator(gen.ifindex, frame, ports=1000) as g:
                return g.run(count, duration=10, chunk=count).seconds

        seconds = tb.call("gen", go)
        time.sleep(0.05)
        ran = p.info().run_cnt - before
    return ran / seconds, ran


def sh_in(tb: Testbed, ns: str, script: str, timeout: float = 600) -> str:
    """Run a shell script in ``ns`` with a private bpffs (xdp-filter pins its maps there, so
    everything that needs them must happen in the same script)."""
    return tb.exec(ns, ["sh", "-c", "mount -t bpf bpf /sys/fs/bpf && " + script],
                   timeout=timeout).stdout


def _xdp_filter_off(tb: Testbed) -> None:
    sh_in(tb, "sink", "xdp-filter unload veth1 || true")
    if tb.call("sink", xdp.status, "veth1").attachments:
        tb.call("sink", xdp.detach, "veth1")


class Sides:
    """The sampled operations of both filters on one bed."""

    def __init__(self, tb: Testbed, count: int) -> None:
        self.tb = tb
        self.count = count
        self.rules = RuleSet([Rule("denied", src=(IPv4Network(f"{DENIED}/32"),))])
        self.big = RuleSet([Rule("list", src=Prefixes(array.array(
            "I", range(0xC6120000, 0xC6120000 + PREFIXES)).tobytes(), bytes([32]) * PREFIXES))])
        self.counted: list[int] = []
        self.ran: dict[str, list[int]] = {"pyxdp": [], "xdp-filter": []}
        self.round = 0

    def _attach(self) -> Filter:
        return self.tb.call("sink", Filter.attach, "veth1", "native", self.rules, PIN_ROOT,
                            state_root=STATE_ROOT)

    def pyxdp_drop(self) -> float:
        f = self._attach()
        try:
            rate, ran = flood_rate(self.tb, self.tb.call("sink", f.program_id), self.count)
            self.counted.append(self.tb.call("sink", f.stats)["denied"][0])
        finally:
            self.tb.call("sink", f.detach)
        self.ran["pyxdp"].append(ran)
        return rate / 1e6

    def xdp_filter_drop(self) -> float:
        sh_in(self.tb, "sink", f"xdp-filter load -m native -p allow veth1 &&"
              f" xdp-filter ip {DENIED} -m src")
        try:
            st = self.tb.call("sink", xdp.status, "veth1")
            rate, ran = flood_rate(self.tb, st.attachments[0].prog_id, self.count)
        finally:
            _xdp_filter_off(self.tb)
        self.ran["xdp-filter"].append(ran)
        return rate / 1e6

    def pyxdp_rules(self) -> float:
        """Seconds to apply 100,000 prefixes in one atomic generation."""
        f = self._attach()
        try:
            t0 = time.monotonic()
            self.tb.call("sink", f.apply, self.big)
            return time.monotonic() - t0
        finally:
            self.tb.call("sink", f.detach)

    def xdp_filter_rules(self) -> float:
        """Seconds for 100,000 addresses at the per-address cost of 1,000 `xdp-filter ip`."""
        base = 0xC6120000 + 0x8000 + (self.round % 8) * XDP_FILTER_ADDS
        self.round += 1
        addrs = " ".join(str(IPv4Address(base + i)) for i in range(XDP_FILTER_ADDS))
        try:
            timing = sh_in(self.tb, "sink", "xdp-filter load -m native -p allow veth1 &&"
                           f" xdp-filter ip {DENIED} -m src && t0=$(date +%s.%N) &&"
                           f" for a in {addrs}; do xdp-filter ip $a -m src || exit 1; done &&"
                           " t1=$(date +%s.%N) && echo $t0 $t1")
        finally:
            _xdp_filter_off(self.tb)
        t0_s, t1_s = timing.split()[-2:]
        return (float(t1_s) - float(t0_s)) / XDP_FILTER_ADDS * PREFIXES


def _test_run_ns(prog: Any, pkt: bytes) -> float:
    return float(prog.test_run(pkt, repeat=REPEAT).duration_ns)


def feature_cost(rounds: int) -> tuple[dict[str, int], dict[str, list[float]]]:
    """xlated insns and BPF_PROG_TEST_RUN ns/packet samples, one prefix rule vs every
    feature, the two generations alternating."""
    from pyxdp.apps.filter.program import PROGRAM, load_generation
    from pyxdp.apps.filter.tables import Sizes, assign_slots, compile_tables
    from pyxdp.packets import build

    few = f'[[rule]]\nname = "denied"\nsrc = "{DENIED}/32"\n'
    every = (few + '[[rule]]\nname = "p"\nproto = "udp"\ndport = "1000-2000"\n'
             '[[rule]]\nname = "t"\nproto = "tcp"\ntcp_flags = "syn,!ack"\n'
             'rate = { pps = 1000 }\n[[rule]]\nname = "m"\nsrc_mac = "02:00:00:00:00:66"\n'
             '[[rule]]\nname = "v"\nvlan = 5\n[[rule]]\nname = "f"\nfragment = true\n'
             '[[rule]]\nname = "l"\nlength = "0-40"\n[[rule]]\nname = "pat"\n'
             'pattern = { base = "payload", offset = 0, bytes = "deadbeef" }\n'
             '[[rule]]\nname = "d6"\ndst = "2001:db8:ffff::/48"\n')
    pkt = build.ethernet(build.ipv4(build.udp(bytes(18), dport=53), src="198.18.9.9",
                                    dst="198.18.6.2"))
    sizes = Sizes(prefixes4=4096, prefixes6=4096, rules=256, lists=64, macs=64, patterns=64,
                  limits=64, pairs=256, sources=1024, talkers=1024)
    colls: dict[str, Any] = {}
    try:
        for name, text in (("one prefix rule", few), ("every feature", every)):
            rs = parse_rules_text(text)
            tables = compile_tables(rs, assign_slots(rs.rules, {}, sizes.rules), sizes)
            colls[name] = load_generation(tables, sizes, KernelBackend())
        progs = {name: coll.programs[PROGRAM] for name, coll in colls.items()}
        insns = {name: p.info().xlated_size // 8 for name, p in progs.items()}
        ns = alternate({name: partial(_test_run_ns, p, pkt) for name, p in progs.items()},
                       rounds, warmup=1)
    finally:
        for coll in colls.values():
            coll.close()
    return insns, ns


def _scale_rows(r: Report, tr: dict[str, list[float]], mem: dict[str, Any],
                veth: dict[str, list[float]], cp: dict[str, Any]) -> None:
    """The issue-13 rows: per-packet ns and veth Mpps by list size, control plane, memory."""
    from pyxdp.bench import filter_scale as fsc

    def med(v: list[float]) -> float:
        return statistics.median(v)

    rows = []
    for n in fsc.SIZES:
        kinds = [("pyxdp", f"/32s ({mem[f'pyxdp {n}']['table']})"),
                 ("pyxdp hash", f"/32s ({mem[f'pyxdp hash {n}']['table']})")]
        if n in fsc.MIXED:
            kinds += [(w, f"mixed lengths ({mem[f'{w} {n}']['table']})")
                      for w in ("pyxdp mixed", "pyxdp mixed lpm")]
        for who, label in kinds:
            for what in ("deny", "miss"):
                r.side(f"{who} {what} {n}", tr[f"{who} {what} {n}"], "ns/packet", LOWER)
            diff = [a - b for a, b in zip(tr[f"{who} deny {n}"], tr[f"bare {n}"],
                                          strict=True)]
            r.side(f"{who} deny-bare {n}", diff, "ns/packet", LOWER)
            cells = [f"{n:,}", label, fmt(med(tr[f"{who} deny {n}"])),
                     fmt(med(tr[f"{who} miss {n}"])), fmt(med(tr[f"bare {n}"])),
                     f"{fmt(med(diff))} ({fmt(min(diff))}-{fmt(max(diff))})"]
            if n in fsc.COMPARED and who == "pyxdp":
                for what in ("deny", "miss"):
                    r.side(f"xdp-filter {what} {n}", tr[f"xdp-filter {what} {n}"],
                           "ns/packet", LOWER)
                    c = r.compare(f"{what}, {n:,} denied addresses (test run)",
                                  f"xdp-filter {what} {n}", f"{who} {what} {n}",
                                  a_label="xdp-filter", b_label="pyxdp filter")
                    cells.append(f"{fmt(med(tr[f'xdp-filter {what} {n}']))}"
                                 f" ({fmt(c.ratio)}x, {c.short()})")
            else:
                cells += ["-", "-"]
            kb = mem[f"{who} {n}"]["memlock"] / max(n, 1)
            cells.append(f"{kb:,.0f}")
            rows.append(cells)
    r.table("Per packet by block-list size (BPF_PROG_TEST_RUN, 1,000,000 repeats a sample)",
            ["denied prefixes", "pyxdp table", "pyxdp deny ns", "pyxdp miss ns",
             "bare parse+drop ns", "pyxdp deny - bare ns (range)",
             "xdp-filter deny ns (xdp-filter ns / pyxdp ns, verdict)",
             "xdp-filter miss ns (ratio, verdict)", "kernel bytes per prefix (memlock)"],
            rows, "xdp-filter is its own object (xdpfilt_alw_ip.o) loaded and filled as"
            " xdp-tools does, run directly (no dispatcher in front); it has no prefixes, so"
            " it stops at 10,000 addresses.  A ratio above 1 means pyxdp is faster.")
    vrows = []
    for n in fsc.SIZES:
        cells = [f"{n:,}"]
        for who in ("pyxdp", "xdp-filter"):
            for what in ("deny", "pass"):
                k = f"{who} {what} {n}"
                if k in veth:
                    r.side(f"veth {k}", veth[k], "Mpps")
                    v = veth[k]
                    cells.append(f"{fmt(med(v))} ({fmt(min(v))}-{fmt(max(v))})")
                else:
                    cells.append("-")
        vrows.append(cells)
    r.table("Veth Mpps by block-list size (delivered; generator and sink share 2 CPUs)",
            ["denied prefixes", "pyxdp deny", "pyxdp pass", "xdp-filter deny",
             "xdp-filter pass"], vrows,
            "pass: the packets go on to the stack, which bounds the rate for both.")
    for key in ("apply_s", "open_s"):
        r.side(f"1M {key}", cp[key], "s", LOWER)
    r.table("Control plane at 1,000,000 prefixes (a fresh process, Filter API)",
            ["measure", "median (min-max)", "aim"],
            [["apply (one atomic generation)", f"{fmt(med(cp['apply_s']))} s"
              f" ({fmt(min(cp['apply_s']))}-{fmt(max(cp['apply_s']))})", "< 3 s"],
             ["reopen (Filter.open, state read back)", f"{fmt(med(cp['open_s']))} s"
              f" ({fmt(min(cp['open_s']))}-{fmt(max(cp['open_s']))})", "< 1 s"],
             ["build the rule (packed, 1M addresses)", f"{fmt(cp['build_s'])} s", ""],
             ["peak RSS of that process", f"{cp['maxrss_mb']:.0f} MB", "reported"]])
    aims = []
    for n in fsc.COMPARED:
        for what in ("deny", "miss"):
            ratio = [a / b for a, b in zip(tr[f"xdp-filter {what} {n}"],
                                           tr[f"pyxdp {what} {n}"], strict=True)]
            aims.append([f"{what} at {n:,}: xdp-filter ns / pyxdp ns", ">= 1.5",
                         f"{fmt(med(ratio))} ({fmt(min(ratio))}-{fmt(max(ratio))})",
                         _met(min(ratio) >= 1.5, med(ratio) >= 1.5)])
    for who, label in (("pyxdp", "/32s"), ("pyxdp mixed", "mixed lengths")):
        diff = [a - b for a, b in zip(tr[f"{who} deny 1000000"], tr["bare 1000000"],
                                      strict=True)]
        aims.append([f"deny - parse-and-drop at 1,000,000 {label}", "<= 15 ns",
                     f"{fmt(med(diff))} ({fmt(min(diff))}-{fmt(max(diff))})",
                     _met(max(diff) <= 15, med(diff) <= 15)])
    for key, label, limit in (("apply_s", "apply 1,000,000 prefixes", 3.0),
                              ("open_s", "reopen 1,000,000 prefixes", 1.0)):
        v = cp[key]
        aims.append([label, f"< {limit:g} s", f"{fmt(med(v))} s ({fmt(min(v))}-{fmt(max(v))})",
                     _met(max(v) < limit, med(v) < limit)])
    aims.append(["peak RSS of the control plane, 1,000,000 prefixes", "reported",
                 f"{cp['maxrss_mb']:.0f} MB", "reported"])
    r.table("The issue's aims", ["aim", "target", "measured median (min-max)", "met"], aims,
            "met: every round inside the target; 'median only': the median is, some rounds"
            " are not.")
    r.extra["scale_memory"] = mem
    r.extra["control_plane"] = cp


def _met(every: bool, median: bool) -> str:
    return "yes" if every else ("median only" if median else "no")


def measure(rounds: int, count: int, log: Callable[[str], None] = stderr_log,
            scale: bool = True) -> Report:
    r = Report(NAME, "pyxdp filter vs xdp-filter", rounds=rounds,
               params={"frames_per_sample": count, "denied": DENIED, "prefixes": PREFIXES,
                       "xdp_filter_adds_per_sample": XDP_FILTER_ADDS})
    r.intro = (f"Veth bed, both attached natively, {count:,} frames per sample from one denied"
               " source (random ports), packets counted by the kernel's run statistics of"
               " each program (generator and sink share a CPU: delivered rates).  Each round"
               " attaches a fresh filter; pyxdp and xdp-filter alternate.")
    with bed() as tb, enable_stats():
        s = Sides(tb, count)
        log(f"filter_speed: drop rate, {rounds} alternating rounds")
        drop = alternate({"pyxdp": s.pyxdp_drop, "xdp-filter": s.xdp_filter_drop}, rounds,
                         log=log)
        log(f"filter_speed: adding {PREFIXES:,} rules, {rounds} alternating rounds")
        rules = alternate({"pyxdp": s.pyxdp_rules, "xdp-filter": s.xdp_filter_rules}, rounds,
                          log=log)
        if scale:
            from pyxdp.bench import filter_scale as fsc
            log("filter_speed: scale, veth")
            veth = fsc.veth_rows(tb, rounds, count // 2, log)
            log("filter_speed: scale, control plane at 1,000,000 prefixes")
            cp = fsc.control_plane(tb.ns_name("sink"), rounds)
    log("filter_speed: feature cost (BPF_PROG_TEST_RUN)")
    insns, ns = feature_cost(rounds)
    if scale:
        log("filter_speed: scale, BPF_PROG_TEST_RUN")
        tr, mem = fsc.test_run_rows(rounds, log)
        _scale_rows(r, tr, mem, veth, cp)

    r.side("drop pyxdp", drop["pyxdp"], "Mpps")
    r.side("drop xdp-filter", drop["xdp-filter"], "Mpps")
    d = r.compare("drop rate, one denied address", "drop pyxdp", "drop xdp-filter",
                  a_label="pyxdp filter", b_label="xdp-filter")
    r.side("rules pyxdp", rules["pyxdp"], "s", LOWER)
    r.side("rules xdp-filter", rules["xdp-filter"], "s", LOWER)
    rc = r.compare(f"add {PREFIXES:,} rules", "rules pyxdp", "rules xdp-filter",
                   a_label="pyxdp filter", b_label="xdp-filter (scaled from 1,000)")
    for name, samples in ns.items():
        r.side(f"cost {name}", samples, "ns/packet", LOWER)
    r.compare("feature cost, a packet that matches nothing", "cost every feature",
                   "cost one prefix rule", a_label="every feature", b_label="one prefix rule",
                   word="cheaper")
    per_ms = [x / PREFIXES * 1e3 for x in rules["xdp-filter"]]
    r.table("At a glance (medians; min-max in the verdicts)",
            ["measure", "pyxdp filter", "xdp-filter", "ratio", "verdict"], [
                ["drop rate, one denied address", f"{fmt(d.sa.median)} Mpps",
                 f"{fmt(d.sb.median)} Mpps", f"{d.ratio:.2f}", d.short()],
                [f"add {PREFIXES:,} rules", f"{fmt(rc.sa.median)} s (one atomic generation,"
                 " addresses in 198.18.0.0/15)", f"~{fmt(rc.sb.median)} s (one `xdp-filter"
                 f" ip` per address: {fmt(statistics.median(per_ms))} ms each,"
                 f" measured on {XDP_FILTER_ADDS:,})", f"{rc.ratio:.3f}", rc.short()],
                ["prefixes (CIDR), address+port rules, rate limits", "yes", "no", "", ""]])
    r.table("Only features in use cost cycles (BPF_PROG_TEST_RUN, a packet that matches"
            " nothing)", ["rule set", "xlated insns", "ns/packet median (min-max)"],
            [[name, insns[name], f"{fmt(statistics.median(v))} ({fmt(min(v))}-{fmt(max(v))})"]
             for name, v in ns.items()])
    r.extra = {"xlated_insns": insns, "pyxdp_counted_denied": s.counted, "ran": s.ran,
               "xdp_filter_per_address_ms": per_ms}
    r.notes += [f"The {PREFIXES:,}-rule figure of xdp-filter is scaled from {XDP_FILTER_ADDS:,}"
                " `xdp-filter ip` commands per round (one process each); pyxdp applies all"
                f" {PREFIXES:,} in one generation.",
                "The machine is a shared 2-vCPU VM (other jobs ran at the same time): read the"
                " spreads, not one number."]
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.filter_speed",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=COUNT, help="frames per drop-rate sample")
    ap.add_argument("--no-scale", action="store_true",
                    help="skip the block-list size rows (test run, veth, control plane)")
    harness.add_arguments(ap)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    if os.geteuid() != 0:
        print("filter_speed: needs root (bpf(), namespaces)", file=sys.stderr)
        return 1
    if shutil.which("xdp-filter") is None:
        print("xdp-filter (xdp-tools) is not installed: nothing to compare with",
              file=sys.stderr)
        return 1
    return harness.finish(measure(args.rounds, args.count, scale=not args.no_scale), args)


if __name__ == "__main__":
    sys.exit(main())
