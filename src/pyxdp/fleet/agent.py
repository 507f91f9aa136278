"""The fleet agent of one host: watches the host's ``desired`` key in etcd and applies the
policy it names through the filter's control plane, one atomic generation per change, and
reports under a lease.

* A policy that fails (parse error, apply refused) leaves the filter's last good rules in
  force; the error is in the status (``state: error``).
* etcd unreachable (members down, a partition): the filter keeps its rules (the data plane
  never depends on the agent), the agent retries with backoff; when it is back it reports
  the time it was stale and resyncs: it re-reads ``desired`` and watches from there, so a
  compacted history is a full resync, never a gap.
* A crash mid-apply: the filter's own recovery (a generation is applied or not) and the
  next agent's resync converge on the desired policy.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from pyxdp.fleet import store
from pyxdp.fleet.etcd import Client, Compacted, EtcdError

LEASE_TTL = 5


class Agent:
    """``host``'s agent: the filter on ``iface`` (attached at the first policy, in
    ``mode``), etcd through ``client``.  ``filter_roots``: the filter's pin/state roots."""

    def __init__(self, client: Client, host: str, iface: str, *, mode: str | None = None,
                 lease_ttl: int = LEASE_TTL, filter_roots: dict[str, Any] | None = None,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        self.c = client
        self.host = store.check_name(host, "host name")
        self.iface, self.mode = iface, mode
        self.ttl = lease_ttl
        # a partition shows as requests timing out: notice it within the lease's TTL
        client.timeout = min(client.timeout, max(0.3, lease_ttl / 3))
        self.roots: dict[str, Any] = filter_roots or {}
        self.log = log
        self.lease = 0
        self.status: dict[str, Any] = {"host": host, "iface": iface, "pid": os.getpid(),
                                       "state": "starting", "stale_events": 0}
        self.applied: dict[str, Any] | None = None
        self.stop = threading.Event()
        self._stale_since: float | None = None

    # -- reporting ---------------------------------------------------------------------------
    def _report(self, **kw: Any) -> None:
        self.status.update(kw, time=time.time())
        if not self.lease:
            self.lease = self.c.lease_grant(self.ttl)
        self.c.put(store.k_host(self.host, "status"), json.dumps(self.status),
                   lease=self.lease)

    def _keepalive(self) -> None:
        while not self.stop.wait(self.ttl / 3):
            try:
                if self.lease and self.c.lease_keepalive(self.lease) <= 0:
                    self.lease = 0            # expired while we were away: a new one
                    self._report()
            except EtcdError:
                self._stale()

    def _stale(self) -> None:
        if self._stale_since is None:
            self._stale_since = time.monotonic()
            self.status["stale_events"] += 1
            self.log("etcd unreachable: keeping the rules in force")

    def _fresh(self) -> None:
        if self._stale_since is not None:
            took = round(time.monotonic() - self._stale_since, 3)
            self.status["last_stale_s"] = took
            self.status["longest_stale_s"] = max(took, self.status.get("longest_stale_s", 0))
            self._stale_since = None
            self.lease = 0                    # it may have expired: report under a new one
            self.log(f"etcd back after {self.status['last_stale_s']} s: resync")

    # -- applying ----------------------------------------------------------------------------
    def _filter(self) -> Any:
        from pyxdp.apps.filter import Filter, FilterError

        try:
            return Filter.open(self.iface, **self.roots)
        except FilterError:
            return None

    def apply(self, desired: dict[str, Any], revision: int) -> None:
        from pyxdp.apps.filter import Filter
        from pyxdp.apps.filter.rules import parse_rules_text

        name, version = desired.get("policy"), desired.get("version")
        want = {"policy": name, "version": version, "desired_revision": revision}
        if self.applied and all(self.applied.get(k) == want[k] for k in ("policy", "version")):
            self._report(state="applied", **want)
            return
        self._report(state="applying", error=None, **want)
        try:
            if not isinstance(name, str) or not isinstance(version, int):
                raise store.FleetError(f"desired {desired!r}: needs policy and version")
            pol = store.read_policy(self.c, name, version)
            if pol.kind != "filter":
                raise store.FleetError(f"policy kind {pol.kind!r} is not for this agent")
            rules = parse_rules_text(pol.text, f"{name} v{version}")
            f = self._filter()
            if f is None:
                f = Filter.attach(self.iface, self.mode, rules=rules, **self.roots)
            else:
                f.apply(rules)
            try:
                gen = f.generation
            finally:
                f.close()
        except EtcdError:
            raise
        except Exception as e:          # a bad policy: the old rules stay in force
            self.log(f"{name} v{version} failed: {e}")
            self._report(state="error", error=f"{type(e).__name__}: {e}", **want)
            return
        self.applied = {**want, "generation": gen, "rules": len(rules.rules),
                        "time": time.time()}
        self.c.put(store.k_host(self.host, "applied"), json.dumps(self.applied))
        self._report(state="applied", generation=gen, rules=len(rules.rules), **want)
        self.log(f"applied {name} v{version} (generation {gen})")

    def _resync(self) -> int:
        """Read ``desired`` now, apply it; the revision to watch from."""
        kvs, rev = self.c.get(store.k_host(self.host, "desired"))
        self._fresh()
        if kvs:
            self.apply(json.loads(kvs[0].value), kvs[0].mod_revision)
        else:
            self._report(state="unassigned")
        return rev

    def run(self) -> None:
        """Until :attr:`stop` is set."""
        with contextlib.suppress(EtcdError):
            prev = self.c.get_one(store.k_host(self.host, "applied"))
            if prev is not None:
                self.applied = json.loads(prev.value)
        ka = threading.Thread(target=self._keepalive, daemon=True)
        ka.start()
        backoff = 0.1
        while not self.stop.is_set():
            try:
                rev = self._resync()
                backoff = 0.1
                for _rev, events in self.c.watch(store.k_host(self.host, "desired"),
                                                 start_revision=rev + 1,
                                                 timeout=self.ttl / 3):
                    if self.stop.is_set() or self._stale_since is not None:
                        break             # stopping, or the lease saw etcd go: resync
                    if events:
                        self._fresh()         # a message came: etcd is reachable
                    for ev in events[-1:]:
                        if ev.type == "PUT":
                            self.apply(json.loads(ev.kv.value), ev.kv.mod_revision)
            except Compacted:
                continue                      # a full resync
            except EtcdError as e:
                self._stale()
                self.log(f"etcd: {e}")
                self.stop.wait(backoff)
                backoff = min(2.0, backoff * 2)
        with contextlib.suppress(EtcdError):
            if self.lease:
                self.c.lease_revoke(self.lease)


__all__ = ["LEASE_TTL", "Agent"]
