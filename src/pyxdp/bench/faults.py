"""The filter under faults: the fault table of the reliability issue, re-run.

Run as root: ``python -m pyxdp.bench.faults [--kills N] [--reloads N]``.  On a namespace
bed (gen/veth0 -> sink/veth1, the filter native on veth1):

* **kill -9 mid-change**: a control plane applies 100k prefixes (one rule set, ~1-2 s) and
  is killed with SIGKILL at a random moment of it; afterwards the filter must still be
  attached and judging (1,000 frames from a denied prefix all dropped), a new control
  plane must open it (recovering the interrupted change), its state must name the program
  the link runs, and no temporary file may be left.
* **reloads under traffic**: the generator sends in chunks while the rule set is replaced
  again and again; every frame that reached XDP must be counted by exactly one rule or
  the default of one whole rule set (counters of all rules + default = frames counted at
  the interface by the kernel's run statistics of the attached programs).
* **restart**: counters read by a fresh process equal those of the running one.
* **exhaustion**: per-source rate limits with 0.5x, 5x and 100x as many flooding sources
  as the bucket table holds; the share of the flood that passes, against what the limit
  allows.

Results: ``bench/results/faults.json`` and ``.md``.  No reference tool: these are pyxdp's
own guarantees, each row says what was checked and what was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from pyxdp.bench import harness
from pyxdp.bench.harness import Report, stderr_log

NAME = "faults"
DENIED = "198.19.0.0/16"

APPLY = """
import sys
from pyxdp.apps.filter import Filter, RuleSet, parse_rule
from pyxdp.xdp import in_netns
ns, pin_root, state_root, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
prefixes = [f"198.{20 + i // 65536}.{i // 256 % 256}.{i % 256}/32" for i in range(n)]
rs = RuleSet([parse_rule({"name": "deny", "src": "198.19.0.0/16"}),
              parse_rule({"name": "bulk", "src": prefixes})])

def run():
    f = Filter.open("veth1", pin_root=pin_root, state_root=state_root)
    print("ready", flush=True)
    f.apply(rs)
    print("done", flush=True)

in_netns(ns, run)
"""


def _bed() -> Any:
    from pyxdp.testbed import Testbed

    tb = Testbed()
    tb.__enter__()
    for ns in ("gen", "sink"):
        tb.namespace(ns)
        tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
    tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.9.1/24", "198.18.9.2/24"))
    return tb


def _frame(tb: Any, src: str) -> bytes:
    from pyxdp.trafficgen import template

    gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
    return template("udp", src=src, dst=sink.ip4, smac=gen.mac, dmac=sink.mac, dport=9)


def _send(tb: Any, frame: bytes, count: int, sources: int = 1) -> int:
    from pyxdp.trafficgen import Generator

    gen = tb.interfaces[("gen", "veth0")]

    def go() -> int:
        with Generator(gen.ifindex, frame, sources=sources) as g:
            return g.run(count, duration=30).sent

    return int(tb.call("gen", go))


def kill_trials(tb: Any, roots: dict[str, str], n: int, prefixes: int,
                log: Any) -> list[dict[str, Any]]:
    from pyxdp import xdp
    from pyxdp.apps.filter import Filter, parse_rules_text

    ns = tb.ns_name("sink")
    f = tb.call("sink", Filter.attach, "veth1", "native",
                parse_rules_text(f'[[rule]]\nname = "deny"\nsrc = "{DENIED}"\n'), **roots)
    tb.call("sink", f.close)
    # one uninterrupted apply, for the length of the window to kill in
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", APPLY, ns, roots["pin_root"], roots["state_root"],
                    str(prefixes)], check=True, capture_output=True, timeout=300)
    full = time.monotonic() - t0
    rng = random.Random(9)
    rows = []
    for i in range(n):
        delay = rng.uniform(0.0, full)
        p = subprocess.Popen([sys.executable, "-c", APPLY, ns, roots["pin_root"],
                              roots["state_root"], str(prefixes + 1 + i)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        p.stdout.readline()                      # "ready": the filter is open
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        row: dict[str, Any] = {"trial": i + 1, "killed_after_ms": round(delay * 1e3)}
        att = tb.call("sink", xdp.status, "veth1").attachments
        row["attached"] = bool(att)
        g = tb.call("sink", Filter.open, "veth1", **roots)
        try:
            before = tb.call("sink", g.stats).get("deny", (0, 0))[0]
            sent = _send(tb, _frame(tb, "198.19.3.3"), 1000)
            time.sleep(0.05)
            after = tb.call("sink", g.stats).get("deny", (0, 0))[0]
            row["judging"] = after - before == sent
            row["reopened"] = True
            row["state_names_running_program"] = (tb.call("sink", g.program_id)
                                                  == att[0].prog_id) if att else False
            bulk = [r for r in tb.call("sink", g.rules).rules if r.name == "bulk"]
            # this trial's rule set has prefixes + 1 + i prefixes; the one before it fewer
            row["change_finished"] = bool(bulk) and len(bulk[0].src) == prefixes + 1 + i
            left = [x for x in os.listdir(g.state_dir) if ".tmp" in x
                    or x == "state.next.json"]
            row["temp_files_left"] = len(left)
        finally:
            g.close()
        log(f"  kill {i + 1}/{n} after {row['killed_after_ms']} ms: {row}")
        rows.append(row)
    g = tb.call("sink", Filter.open, "veth1", **roots)
    tb.call("sink", g.detach)
    return rows


def reload_under_traffic(tb: Any, roots: dict[str, str], reloads: int, log: Any
                         ) -> dict[str, Any]:
    import threading

    from pyxdp.apps.filter import Filter, parse_rules_text
    from pyxdp.kernel import Program, enable_stats

    sets = [parse_rules_text('[[rule]]\nname = "a"\nsrc = "198.19.0.0/17"\n'),
            parse_rules_text('[[rule]]\nname = "b"\nsrc = "198.19.128.0/17"\n'
                             '[[rule]]\nname = "a"\nsrc = "198.19.0.0/17"\n')]
    f = tb.call("sink", Filter.attach, "veth1", "native", sets[0], **roots)
    stats_fd = enable_stats()
    progs: dict[int, Any] = {}
    sent = [0]
    stop = threading.Event()

    def traffic() -> None:
        fr = _frame(tb, "198.19.1.1")
        while not stop.is_set():
            sent[0] += _send(tb, fr, 20_000, sources=256)

    def hold_program() -> None:
        pid = tb.call("sink", f.program_id)
        if pid not in progs:
            progs[pid] = Program.from_id(pid)

    try:
        hold_program()
        t = threading.Thread(target=traffic)
        t.start()
        for i in range(reloads):
            tb.call("sink", f.apply, sets[(i + 1) % 2])
            hold_program()
            time.sleep(0.02)
        stop.set()
        t.join()
        time.sleep(0.1)
        runs = sum(p.info().run_cnt for p in progs.values())
        st = tb.call("sink", f.stats)
        # every rule's count plus the default's ("@passed"/"@dropped" are sums of those)
        counted = sum(v[0] for k, v in st.items() if k not in ("@passed", "@dropped"))
    finally:
        for p in progs.values():
            p.close()
        stats_fd.close()
        tb.call("sink", f.detach)
    out = {"reloads": reloads, "generations": len(progs), "frames_sent": sent[0],
           "program_runs": runs, "counted_by_rules_and_default": counted,
           "judged_by_neither": runs - counted}
    log(f"  reloads: {out}")
    return out


def restart(tb: Any, roots: dict[str, str], log: Any) -> dict[str, Any]:
    from pyxdp.apps.filter import Filter, parse_rules_text

    f = tb.call("sink", Filter.attach, "veth1", "native",
                parse_rules_text(f'[[rule]]\nname = "deny"\nsrc = "{DENIED}"\n'), **roots)
    _send(tb, _frame(tb, "198.19.4.4"), 5000)
    time.sleep(0.05)
    mine = tb.call("sink", f.stats)
    r = subprocess.run([sys.executable, "-m", "pyxdp", "filter", "stats", "veth1", "--json",
                        "--netns", tb.ns_name("sink"), "--pin-root", roots["pin_root"],
                        "--state-root", roots["state_root"]], capture_output=True, text=True,
                       timeout=60, check=True)
    theirs = json.loads(r.stdout)
    tb.call("sink", f.detach)
    rules = {k: v["packets"] for k, v in theirs["stats"].items()}
    same = set(rules) == set(mine) and all(rules[k] == v[0] for k, v in mine.items())
    out = {"counters_here": {k: v[0] for k, v in mine.items()}, "fresh_process_reads": rules,
           "equal": same}
    log(f"  restart: {out}")
    return out


def exhaustion(tb: Any, roots: dict[str, str], log: Any) -> list[dict[str, Any]]:
    from pyxdp.apps.filter import Filter, Sizes, parse_rules_text

    rows = []
    cap = 1024
    for factor in (0.5, 5, 100):
        sources = int(cap * factor)
        f = tb.call("sink", Filter.attach, "veth1", "native", parse_rules_text(
            '[[rule]]\nname = "per-src"\nproto = "udp"\nrate = { pps = 2, burst = 2 }\n'),
            **roots, sizes=Sizes(sources=cap))
        try:
            per = 40
            t0 = time.monotonic()
            sent = _send(tb, _frame(tb, "198.18.64.0"), per * sources, sources=sources)
            secs = time.monotonic() - t0
            time.sleep(0.05)
            st = tb.call("sink", f.stats)
        finally:
            tb.call("sink", f.detach)
        dropped, passed = st["per-src"][0], st["@default"][0]
        allowed = sources * min(per, 4 * (int(secs) + 2))
        row = {"sources": sources, "x_cap": factor, "sent": sent, "reached": dropped + passed,
               "passed": passed, "dropped": dropped, "allowed_at_most": allowed,
               "passed_share": round(passed / max(1, dropped + passed), 4),
               "due_to_drop_share": round(max(0, dropped + passed - allowed)
                                          / max(1, dropped + passed), 4),
               "limit_held": passed <= 1.1 * allowed + 100}
        log(f"  exhaustion {factor}x: {row}")
        rows.append(row)
    return rows


def measure(kills: int, reloads: int, prefixes: int, log: Any = stderr_log) -> Report:
    r = Report(NAME, "The filter under faults: kill -9, reloads under traffic, restart,"
                     " bucket exhaustion", rounds=1, compact=True,
               params={"kills": kills, "reloads": reloads, "prefixes": prefixes})
    tb = _bed()
    state = tempfile.mkdtemp(prefix="pyxdp-faults-")
    roots = {"pin_root": f"/sys/fs/bpf/pyxdp-faults-{secrets.token_hex(4)}",
             "state_root": state}
    try:
        k = kill_trials(tb, roots, kills, prefixes, log)
        rl = reload_under_traffic(tb, roots, reloads, log)
        rs = restart(tb, roots, log)
        ex = exhaustion(tb, roots, log)
    finally:
        tb.__exit__(None, None, None)
        shutil.rmtree(roots["pin_root"], ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    ok = sum(all((x["attached"], x["judging"], x["reopened"], x["state_names_running_program"],
                  x["temp_files_left"] == 0)) for x in k)
    r.table(f"kill -9 during a {prefixes:,}-prefix apply", [
        "trial", "killed after ms", "still attached", "still judging", "reopened",
        "state names the running program", "change finished", "temp files left"],
        [[x["trial"], x["killed_after_ms"], x["attached"], x["judging"], x["reopened"],
          x["state_names_running_program"], x["change_finished"], x["temp_files_left"]]
         for x in k], f"**{ok} of {len(k)} trials: attached, judging, reopened, consistent,"
                      " nothing left behind.**  A kill before the swap leaves the old rules"
                      " (change not finished), after it the new ones: both are whole.")
    r.table("Reloads under traffic", ["reloads", "generations", "frames sent",
                                      "program runs (kernel run statistics)",
                                      "counted by a rule or the default",
                                      "judged by neither"],
            [[rl["reloads"], rl["generations"], rl["frames_sent"], rl["program_runs"],
              rl["counted_by_rules_and_default"], rl["judged_by_neither"]]])
    r.table("Restart", ["counters in the running control plane", "read by a fresh process",
                        "equal"],
            [[rs["counters_here"], rs["fresh_process_reads"], rs["equal"]]])
    r.table("Per-source rate limit, flooding sources vs the bucket table (1,024)", [
        "sources", "x table", "reached XDP", "passed", "allowed at most", "passed share",
        "share due to be dropped", "limit held"],
        [[x["sources"], x["x_cap"], x["reached"], x["passed"], x["allowed_at_most"],
          x["passed_share"], x["due_to_drop_share"], x["limit_held"]] for x in ex],
        "Each source sends 40 frames against pps = 2, burst = 2; 'allowed at most' counts 4"
        " per source per one-second window the run touched.")
    r.extra = {"kills": k, "reloads": rl, "restart": rs, "exhaustion": ex}
    r.notes.append("2 shared vCPUs; the generator and the filter share them.")
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.faults",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--reloads", type=int, default=30)
    ap.add_argument("--prefixes", type=int, default=100_000)
    harness.add_arguments(ap, rounds=5)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("faults: needs root (namespaces, bpf())", file=sys.stderr)
        return 1
    return harness.finish(measure(args.kills, args.reloads, args.prefixes), args)


if __name__ == "__main__":
    sys.exit(main())
