"""The fleet's state in etcd: policies (versioned, chunked), each host's desired policy,
its status (under the agent's lease) and its last applied policy; pushes with a staged
rollout, fleet status, rollback, and host provisioning (user, role, registry entry).

Keys (``/pyxdp/`` prefix)::

    policies/<name>/current                      the version in force, as text
    policies/<name>/latest                       the highest version written
    policies/<name>/v/<version>/meta             {"kind", "version", "chunks", "sha256", ...}
    policies/<name>/v/<version>/chunk/<i>        the policy text, in pieces under etcd's
                                                 request limit
    registry/<host>                              the host exists (written at provisioning)
    hosts/<host>/desired                         {"policy", "version", "rollout"} (admin)
    hosts/<host>/status                          the agent's report, under its lease
    hosts/<host>/applied                         the last policy it applied (persistent)

A version is written chunks first, then its meta and ``current`` in one transaction, so an
agent that sees a meta finds every chunk.  A host's role may read the policies and its own
``desired``, and write only its own ``status`` and ``applied``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pyxdp.errors import PyxdpError
from pyxdp.fleet.etcd import Client, EtcdError

ROOT = "/pyxdp/"
CHUNK = 512 << 10               # bytes of policy text per key (etcd's default request
                                # limit is 1.5 MiB, and the gateway sends base64)
KINDS = ("filter",)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class FleetError(PyxdpError):
    """A fleet operation cannot be done (bad name, unknown policy, failed rollout...)."""


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise FleetError(f"{what} {name!r}: 1-63 characters, letters, digits, '_', '.',"
                         " '-', starting with a letter or digit")
    return name


def k_current(policy: str) -> str:
    return f"{ROOT}policies/{policy}/current"


def k_latest(policy: str) -> str:
    return f"{ROOT}policies/{policy}/latest"


def k_version(policy: str, version: int) -> str:
    return f"{ROOT}policies/{policy}/v/{version:08d}/"


def k_registry(host: str = "") -> str:
    return f"{ROOT}registry/{host}"


def k_host(host: str, what: str) -> str:
    return f"{ROOT}hosts/{host}/{what}"


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    kind: str
    text: str
    sha256: str


def validate(kind: str, text: str) -> int:
    """Parse ``text`` as a policy of ``kind``; the number of rules.  Raises the parser's
    error (naming file line and rule) for a bad policy."""
    if kind != "filter":
        raise FleetError(f"unknown policy kind {kind!r} (known: {', '.join(KINDS)})")
    from pyxdp.apps.filter.rules import parse_rules_text

    return len(parse_rules_text(text, "<policy>").rules)


def write_policy(c: Client, name: str, text: str, *, kind: str = "filter",
                 check: bool = True) -> int:
    """Store ``text`` as the next version of policy ``name``; returns the version.
    ``check`` parses it first (a bad policy is refused here, not on the hosts)."""
    check_name(name, "policy name")
    if check:
        validate(kind, text)
    elif kind not in KINDS:
        raise FleetError(f"unknown policy kind {kind!r} (known: {', '.join(KINDS)})")
    data = text.encode()
    for _attempt in range(5):
        cur = c.get_one(k_latest(name))
        version = int(cur.value) + 1 if cur else 1
        base = k_version(name, version)
        n = max(1, math.ceil(len(data) / CHUNK))
        for i in range(n):
            c.put(f"{base}chunk/{i:06d}", data[i * CHUNK:(i + 1) * CHUNK])
        meta = {"name": name, "kind": kind, "version": version, "chunks": n,
                "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "created": time.time()}
        ok, _ = c.txn({f"{base}meta": json.dumps(meta), k_latest(name): str(version),
                       k_current(name): str(version)},
                      unless_changed={k_latest(name): cur.mod_revision if cur else 0})
        if ok:
            return version
        c.delete(base, prefix=True)     # a concurrent push took the number: retry
    raise FleetError(f"policy {name!r}: concurrent pushes kept taking the version number")


def read_policy(c: Client, name: str, version: int) -> Policy:
    """Version ``version`` of policy ``name``, checked against its sha256."""
    base = k_version(name, version)
    meta_kv = c.get_one(f"{base}meta")
    if meta_kv is None:
        raise FleetError(f"policy {name!r} has no version {version}")
    meta = json.loads(meta_kv.value)
    kvs, _ = c.get(f"{base}chunk/", prefix=True)
    chunks = sorted(kvs, key=lambda kv: kv.key)
    if len(chunks) != meta["chunks"]:
        raise FleetError(f"policy {name!r} v{version}: {len(chunks)} of {meta['chunks']}"
                         " chunks in etcd")
    data = b"".join(kv.value for kv in chunks)
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise FleetError(f"policy {name!r} v{version}: content does not match its sha256")
    return Policy(name, version, meta["kind"], data.decode(), meta["sha256"])


def current_version(c: Client, name: str) -> int:
    cur = c.get_one(k_current(name))
    if cur is None:
        raise FleetError(f"no policy {name!r} in the fleet")
    return int(cur.value)


def hosts(c: Client, pattern: str = "*") -> list[str]:
    """Provisioned hosts whose names match the glob ``pattern``."""
    kvs, _ = c.get(k_registry(), prefix=True, keys_only=True)
    names = [kv.key.decode()[len(k_registry()):] for kv in kvs]
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def register(c: Client, host: str, info: dict[str, Any] | None = None) -> None:
    c.put(k_registry(check_name(host, "host name")), json.dumps(info or {}))


def provision_host(c: Client, host: str, password: str) -> None:
    """The etcd user and role of ``host`` (read the policies and its own desired key,
    write its own status and applied keys) and its registry entry; ``c`` must be root."""
    check_name(host, "host name")
    c.add_user(host, password)
    c.add_role(f"host-{host}", [("READ", f"{ROOT}policies/", True),
                                ("READ", k_host(host, "desired"), False),
                                ("READWRITE", k_host(host, "status"), False),
                                ("READWRITE", k_host(host, "applied"), False)])
    c.grant_role(host, f"host-{host}")
    register(c, host)


def init_auth(c: Client, root_password: str) -> None:
    """Create the root user and turn etcd's authentication on (``c`` unauthenticated)."""
    c.add_user("root", root_password)
    c.grant_role("root", "root")
    c.enable_auth()


@dataclass
class HostStatus:
    host: str
    desired: dict[str, Any] | None
    status: dict[str, Any] | None          # None: no live agent (its lease expired)
    applied: dict[str, Any] | None

    @property
    def state(self) -> str:
        if self.desired is None:
            return "unassigned"
        if self.status is None:
            return "down"
        if self.status.get("state") == "error" and self._is_desired(self.status):
            return "failed"
        if self.applied and self._is_desired(self.applied):
            return "applied"
        return "lagging"

    def _is_desired(self, d: dict[str, Any]) -> bool:
        assert self.desired is not None
        return (d.get("policy") == self.desired.get("policy")
                and d.get("version") == self.desired.get("version"))

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "state": self.state, "desired": self.desired,
                "applied": self.applied, "status": self.status}


def _json(kv: Any) -> dict[str, Any] | None:
    if kv is None:
        return None
    try:
        d = json.loads(kv.value)
    except ValueError:
        return {"corrupt": kv.value[:100].decode(errors="replace")}
    return d if isinstance(d, dict) else None


def fleet_status(c: Client, pattern: str = "*") -> list[HostStatus]:
    out = []
    for h in hosts(c, pattern):
        out.append(HostStatus(h, _json(c.get_one(k_host(h, "desired"))),
                              _json(c.get_one(k_host(h, "status"))),
                              _json(c.get_one(k_host(h, "applied")))))
    return out


@dataclass
class Rollout:
    policy: str
    version: int
    stages: list[list[str]]
    applied: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    lagging: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.lagging and not self.skipped

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "version": self.version, "stages": self.stages,
                "applied": self.applied, "failed": self.failed, "lagging": self.lagging,
                "skipped": self.skipped, "seconds": round(self.seconds, 3), "ok": self.ok}


def assign(c: Client, hosts_: list[str], policy: str, version: int, rollout: str) -> None:
    """Point ``hosts_`` at ``policy`` ``version``, all in one transaction."""
    value = json.dumps({"policy": policy, "version": version, "rollout": rollout})
    ok, _ = c.txn({k_host(h, "desired"): value for h in hosts_})
    if not ok:
        raise FleetError("etcd refused the assignment transaction")


def wait_applied(c: Client, hosts_: list[str], policy: str, version: int, timeout: float,
                 poll: float = 0.05) -> tuple[list[str], dict[str, str], list[str]]:
    """Until every host applied ``policy`` ``version`` (or failed, or ``timeout``):
    (applied, failed host -> error, lagging)."""
    want = {"policy": policy, "version": version}
    pending = set(hosts_)
    applied: list[str] = []
    failed: dict[str, str] = {}
    end = time.monotonic() + timeout
    while pending and time.monotonic() < end:
        for h in sorted(pending):
            a = _json(c.get_one(k_host(h, "applied")))
            if a and all(a.get(k) == v for k, v in want.items()):
                applied.append(h)
                pending.discard(h)
                continue
            s = _json(c.get_one(k_host(h, "status")))
            if s and s.get("state") == "error" and all(s.get(k) == v
                                                       for k, v in want.items()):
                failed[h] = str(s.get("error", "error"))
                pending.discard(h)
        if pending:
            time.sleep(poll)
    return applied, failed, sorted(pending)


def push(c: Client, policy: str, version: int, pattern: str = "*", *,
         canary: float = 0.0, timeout: float = 60.0) -> Rollout:
    """Roll ``policy`` ``version`` out to the hosts matching ``pattern``: a canary
    fraction first (``canary`` of them, at least one, when > 0), then the rest; it stops
    before the next stage when a host fails or does not apply within ``timeout``."""
    if not 0.0 <= canary < 1.0:
        raise FleetError(f"canary fraction {canary!r}: use 0 (no canary) up to below 1")
    targets = hosts(c, pattern)
    if not targets:
        raise FleetError(f"no provisioned host matches {pattern!r}")
    if c.get_one(f"{k_version(policy, version)}meta") is None:
        raise FleetError(f"policy {policy!r} has no version {version}")
    stages = [targets]
    if canary > 0 and len(targets) > 1:
        n = max(1, math.ceil(canary * len(targets)))
        stages = [targets[:n], targets[n:]] if n < len(targets) else [targets]
    r = Rollout(policy, version, stages)
    t0 = time.monotonic()
    rollout = f"{policy}@{version}@{time.time():.3f}"
    for i, stage in enumerate(stages):
        assign(c, stage, policy, version, rollout)
        applied, failed, lagging = wait_applied(c, stage, policy, version,
                                                max(0.1, timeout - (time.monotonic() - t0)))
        r.applied += applied
        r.failed.update(failed)
        r.lagging += lagging
        if failed or lagging:
            r.skipped = [h for s in stages[i + 1:] for h in s]
            break
    r.seconds = time.monotonic() - t0
    return r


def rollback(c: Client, policy: str, pattern: str = "*", *, to_version: int | None = None,
             canary: float = 0.0, timeout: float = 60.0) -> Rollout:
    """Roll the hosts back to an earlier version of ``policy`` (the one before the newest
    unless ``to_version``) and make it the policy's current version."""
    cur = current_version(c, policy)
    target = to_version if to_version is not None else cur - 1
    if target < 1 or c.get_one(f"{k_version(policy, target)}meta") is None:
        raise FleetError(f"policy {policy!r} has no version {target} to roll back to"
                         f" (current {cur})")
    c.put(k_current(policy), str(target))
    return push(c, policy, target, pattern, canary=canary, timeout=timeout)


def wait_until(pred: Any, timeout: float, poll: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return True
        except EtcdError:
            pass
        time.sleep(poll)
    return False


__all__ = ["CHUNK", "KINDS", "ROOT", "FleetError", "HostStatus", "Policy", "Rollout",
           "assign", "check_name", "current_version", "fleet_status", "hosts", "init_auth",
           "k_current", "k_host", "k_registry", "k_version", "provision_host", "push",
           "read_policy", "register", "rollback", "validate", "wait_applied", "wait_until",
           "write_policy"]
