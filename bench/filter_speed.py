#!/usr/bin/env python3
"""pyxdp filter next to xdp-filter (xdp-tools), side by side on one veth bed (needs root).

* Drop rate: a flood from one denied source address (xdp-filter has no prefixes), random
  source ports, each filter attached natively to the sink; packets counted with the
  kernel's per-program run statistics (BPF_ENABLE_STATS), so neither program is changed.
* Pass rate is left out on purpose: passed frames go to the stack, which is the bottleneck.
* Rule changes: pyxdp applies 100,000 prefixes atomically in one generation; xdp-filter
  adds addresses one `xdp-filter ip` command at a time (measured on 1,000, per address).
* Feature cost: xlated instructions and BPF_PROG_TEST_RUN ns/packet of the filter with one
  prefix rule vs every feature in use (only features in use cost cycles).

Writes bench/results/filter_speed.json and .md.  ``python bench/filter_speed.py``
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pyxdp import xdp  # noqa: E402
from pyxdp.apps.filter import Filter, Rule, RuleSet, parse_rules_text  # noqa: E402
from pyxdp.kernel import Program, enable_stats  # noqa: E402
from pyxdp.testbed import Testbed  # noqa: E402
from pyxdp.trafficgen import Generator, template  # noqa: E402

DENIED = "198.19.0.1"
COUNT = 3_000_000
PIN_ROOT = "/sys/fs/bpf/pyxdp-bench-filter"
STATE_ROOT = "/run/pyxdp-bench-filter"


def bed() -> Testbed:
    tb = Testbed()
    for ns in ("gen", "sink"):
        tb.namespace(ns)
        tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
    tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.6.1/24", "198.18.6.2/24"))
    return tb


def flood_rate(tb: Testbed, prog_id: int) -> tuple[float, int]:
    """Frames the sink program ran on per second of generator time, and how many."""
    gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
    frame = template("udp", src=DENIED, dst=sink.ip4, smac=gen.mac, dmac=sink.mac, dport=53)
    with Program.from_id(prog_id) as p:
        before = p.info().run_cnt

        def go() -> float:
            with Generator(gen.ifindex, frame, ports=1000) as g:
                return g.run(COUNT, duration=10, chunk=COUNT).seconds

        seconds = tb.call("gen", go)
        time.sleep(0.05)
        ran = p.info().run_cnt - before
    return ran / seconds, ran


def sh_in(tb: Testbed, ns: str, script: str, timeout: float = 600) -> str:
    """Run a shell script in ``ns`` with a private bpffs (xdp-filter pins its maps there, so
    everything that needs them must happen in the same script)."""
    return tb.exec(ns, ["sh", "-c", "mount -t bpf bpf /sys/fs/bpf && " + script],
                   timeout=timeout).stdout


def main() -> int:
    if shutil.which("xdp-filter") is None:
        print("xdp-filter (xdp-tools) is not installed: nothing to compare with")
        return 1
    out: dict[str, Any] = {"kernel": platform.release(), "frames": COUNT}
    rules = RuleSet([Rule("denied", src=(IPv4Network(f"{DENIED}/32"),))])
    with bed() as tb, enable_stats():
        # -- pyxdp filter ------------------------------------------------------------------
        f = tb.call("sink", Filter.attach, "veth1", "native", rules, PIN_ROOT,
                    state_root=STATE_ROOT)
        try:
            ours, ours_n = flood_rate(tb, tb.call("sink", f.program_id))
            dropped = tb.call("sink", f.stats)["denied"][0]
            # rule changes: 100k prefixes in one atomic generation
            nets = tuple(IPv4Network((0xC6120000 + i, 32)) for i in range(100_000))
            t0 = time.monotonic()
            tb.call("sink", f.apply, RuleSet([Rule("list", src=nets)]))
            apply_s = time.monotonic() - t0
        finally:
            tb.call("sink", f.detach)
        print(f"pyxdp filter: {ours / 1e6:.3f} Mpps dropped ({dropped} counted);"
              f" 100k prefixes applied in {apply_s:.2f} s", flush=True)

        # -- xdp-filter --------------------------------------------------------------------
        addrs = " ".join(str(IPv4Address(0xC6120000 + 0x8000 + i)) for i in range(1000))
        timing = sh_in(tb, "sink", "xdp-filter load -m native -p allow veth1 &&"
                       f" xdp-filter ip {DENIED} -m src && t0=$(date +%s.%N) &&"
                       f" for a in {addrs}; do xdp-filter ip $a -m src || exit 1; done &&"
                       " t1=$(date +%s.%N) && echo $t0 $t1")
        t0_s, t1_s = timing.split()[-2:]
        try:
            st = tb.call("sink", xdp.status, "veth1")
            theirs, theirs_n = flood_rate(tb, st.attachments[0].prog_id)
        finally:
            sh_in(tb, "sink", "xdp-filter unload veth1 || true")
            if tb.call("sink", xdp.status, "veth1").attachments:
                tb.call("sink", xdp.detach, "veth1")
        per_ip = (float(t1_s) - float(t0_s)) / 1000
        print(f"xdp-filter: {theirs / 1e6:.3f} Mpps dropped; {per_ip * 1e3:.2f} ms per address"
              f" added ({per_ip * 100_000:.0f} s for 100k)", flush=True)

    # -- feature cost (test_run, no interface) ---------------------------------------------
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
    cost = {}
    sizes = Sizes(prefixes4=4096, prefixes6=4096, rules=256, lists=64, macs=64, patterns=64,
                  limits=64, pairs=256, sources=1024, talkers=1024)
    for name, text in (("one prefix rule", few), ("every feature", every)):
        rs = parse_rules_text(text)
        tables = compile_tables(rs, assign_slots(rs.rules, {}, sizes.rules), sizes)
        with load_generation(tables, sizes, None) as coll:
            p = coll.programs[PROGRAM]
            ns = min(p.test_run(pkt, repeat=200_000).duration_ns for _ in range(3))
            cost[name] = {"xlated_insns": p.info().xlated_size // 8, "ns_per_packet": ns}
    out.update({
        "drop": {"pyxdp_mpps": round(ours / 1e6, 3), "xdp_filter_mpps": round(theirs / 1e6, 3),
                 "ratio": round(ours / theirs, 3), "pyxdp_counted": dropped,
                 "pyxdp_ran": ours_n, "xdp_filter_ran": theirs_n},
        "rule_changes": {"pyxdp_100k_prefixes_s": round(apply_s, 2),
                         "xdp_filter_per_address_ms": round(per_ip * 1e3, 2),
                         "xdp_filter_100k_estimate_s": round(per_ip * 100_000)},
        "feature_cost": cost,
    })
    res = ROOT / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "filter_speed.json").write_text(json.dumps(out, indent=2) + "\n")
    d, r = out["drop"], out["rule_changes"]
    lines = [
        "# pyxdp filter vs xdp-filter", "",
        f"Kernel {out['kernel']}; veth bed, both attached natively, {COUNT:,} frames from one"
        " denied source (random ports), packets counted by the kernel's run statistics of"
        " each program (generator and sink share a CPU: delivered rates).", "",
        "| measure | pyxdp filter | xdp-filter | ratio |", "|---|---|---|---|",
        f"| drop rate, one denied address | {d['pyxdp_mpps']} Mpps | {d['xdp_filter_mpps']}"
        f" Mpps | {d['ratio']} |",
        f"| add 100,000 rules | {r['pyxdp_100k_prefixes_s']} s (one atomic generation,"
        f" addresses in 198.18.0.0/15) | ~{r['xdp_filter_100k_estimate_s']} s (one `xdp-filter ip` per"
        f" address: {r['xdp_filter_per_address_ms']} ms each, measured on 1,000) | |",
        "| prefixes (CIDR), address+port rules, rate limits | yes | no | |", "",
        "Only features in use cost cycles (BPF_PROG_TEST_RUN, a packet that matches nothing):",
        "", "| rule set | xlated insns | ns/packet |", "|---|---|---|"]
    for name, c in cost.items():
        lines.append(f"| {name} | {c['xlated_insns']} | {c['ns_per_packet']} |")
    (res / "filter_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
