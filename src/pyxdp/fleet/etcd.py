"""A small etcd v3 client over etcd's JSON gateway (``/v3/...``), standard library only.

Why not a client library: the maintained Python clients either need grpcio (a large
native dependency, and the ``etcd3`` package is unmaintained) or wrap this same gateway
(``etcd3gw``, with requests, futurist and pbr).  What the fleet needs is a dozen calls:
range, put, delete, txn, leases, watch from a revision with compaction reported, token auth
and its user/role management, TLS with client certificates, and failover across the
cluster's members.  That is this module, and every error is an :class:`EtcdError` naming
the member and the reason.

Keys and values are ``bytes`` (or ``str``, encoded as UTF-8); revisions are ints.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyxdp.errors import PyxdpError


class EtcdError(PyxdpError):
    """An etcd request failed: no member answered, or the cluster refused it."""

    def __init__(self, msg: str, *, code: int | None = None) -> None:
        super().__init__(msg)
        self.code = code          # the gRPC status code etcd reported, if any


class Unavailable(EtcdError):
    """No member of the cluster could be reached."""


class PermissionDenied(EtcdError):
    """The user's roles do not allow this key (gRPC code 7)."""


class Compacted(EtcdError):
    """A watch asked for a revision the cluster has compacted away."""

    def __init__(self, msg: str, compact_revision: int) -> None:
        super().__init__(msg)
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int


@dataclass(frozen=True)
class Event:
    type: str                  # "PUT" or "DELETE"
    kv: KeyValue


@dataclass(frozen=True)
class TLS:
    """Client TLS: the cluster's CA, and this client's certificate and key."""

    ca: str
    cert: str | None = None
    key: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


def _b64(x: bytes | str) -> str:
    return base64.b64encode(x.encode() if isinstance(x, str) else x).decode()


def _unb64(x: str | None) -> bytes:
    return base64.b64decode(x) if x else b""


def _kv(d: dict[str, Any]) -> KeyValue:
    return KeyValue(_unb64(d.get("key")), _unb64(d.get("value")),
                    int(d.get("mod_revision", 0)), int(d.get("create_revision", 0)),
                    int(d.get("version", 0)), int(d.get("lease", 0)))


def prefix_end(prefix: bytes | str) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    p = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"


class Client:
    """A client of one etcd cluster: ``endpoints`` are its members' client URLs
    (``http://127.0.0.1:2379`` or ``https://...`` with ``tls``); a request that cannot
    reach a member tries the next.  ``user``/``password`` authenticate (token auth)."""

    def __init__(self, endpoints: list[str] | str, *, tls: TLS | None = None,
                 user: str | None = None, password: str | None = None,
                 timeout: float = 5.0) -> None:
        eps = [e for e in (endpoints.split(",") if isinstance(endpoints, str) else endpoints)
               if e]
        if not eps:
            raise EtcdError("no etcd endpoints given")
        self.endpoints = []
        for e in eps:
            u = urllib.parse.urlsplit(e.strip())
            if u.scheme not in ("http", "https") or not u.hostname or not u.port:
                raise EtcdError(f"etcd endpoint {e!r}: expected http(s)://HOST:PORT")
            if u.scheme == "https" and tls is None:
                raise EtcdError(f"etcd endpoint {e!r} is https: give the cluster's CA (tls)")
            self.endpoints.append((u.scheme, u.hostname, u.port))
        self.tls = tls
        self._ssl = tls.context() if tls else None
        self.user, self.password = user, password
        self.timeout = timeout
        self._token: str | None = None
        self._lock = threading.Lock()
        self._preferred = 0

    # -- transport ---------------------------------------------------------------------------
    def _conn(self, i: int, timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port = self.endpoints[i]
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def _headers(self, auth: bool) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if auth and self.user is not None:
            if self._token is None:
                self._authenticate()
            assert self._token is not None
            h["Authorization"] = self._token
        return h

    def _authenticate(self) -> None:
        d = self._call("/v3/auth/authenticate", {"name": self.user, "password": self.password},
                       auth=False)
        self._token = d.get("token")
        if not self._token:
            raise EtcdError(f"etcd gave no token for user {self.user!r}")

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._preferred + k) % n for k in range(n)]

    def _call(self, path: str, body: dict[str, Any], *, auth: bool = True) -> dict[str, Any]:
        errors = []
        for attempt in range(2):            # the second pass after a fresh token
            for i in self._order():
                conn = self._conn(i, self.timeout)
                try:
                    conn.request("POST", path, json.dumps(body), self._headers(auth))
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    errors.append(f"{self._name(i)}: {e}")
                    continue
                finally:
                    conn.close()
                try:
                    d = json.loads(data or b"{}")
                except ValueError:
                    errors.append(f"{self._name(i)}: HTTP {resp.status}, not JSON:"
                                  f" {data[:200]!r}")
                    continue
                if resp.status == 200 and "error" not in d:
                    self._preferred = i
                    return d
                code = d.get("code")
                msg = d.get("message") or d.get("error") or f"HTTP {resp.status}"
                if code == 14 or resp.status in (502, 503):   # unavailable: next member
                    errors.append(f"{self._name(i)}: {msg}")
                    continue
                if auth and self.user is not None and attempt == 0 and (
                        "token" in str(msg) or code == 16):
                    self._token = None                          # expired: authenticate
                    break
                if code == 7 or "permission denied" in str(msg):
                    raise PermissionDenied(f"etcd {path}: {msg}", code=code)
                raise EtcdError(f"etcd {path}: {msg}", code=code)
            else:
                break
        raise Unavailable("no etcd member answered: " + "; ".join(errors))

    def _name(self, i: int) -> str:
        s, h, p = self.endpoints[i]
        return f"{s}://{h}:{p}"

    # -- KV ----------------------------------------------------------------------------------
    def get(self, key: bytes | str, *, prefix: bool = False, revision: int = 0,
            keys_only: bool = False) -> tuple[list[KeyValue], int]:
        """The keys (one, or all under ``prefix``) and the cluster's revision."""
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        if revision:
            body["revision"] = revision
        if keys_only:
            body["keys_only"] = True
        d = self._call("/v3/kv/range", body)
        return [_kv(x) for x in d.get("kvs", [])], int(d["header"]["revision"])

    def get_one(self, key: bytes | str) -> KeyValue | None:
        kvs, _ = self.get(key)
        return kvs[0] if kvs else None

    def put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> int:
        """Write ``key``; returns the revision of the write."""
        body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = lease
        return int(self._call("/v3/kv/put", body)["header"]["revision"])

    def delete(self, key: bytes | str, *, prefix: bool = False) -> int:
        body: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            body["range_end"] = _b64(prefix_end(key))
        return int(self._call("/v3/kv/deleterange", body).get("deleted", 0))

    def txn(self, puts: dict[bytes | str, bytes | str], *,
            unless_changed: dict[bytes | str, int] | None = None,
            deletes: list[bytes | str] = ()) -> tuple[bool, int]:  # type: ignore[assignment]
        """Write ``puts`` (and delete ``deletes``) in one transaction: all or nothing.
        ``unless_changed`` maps keys to the mod revision they must still have (0: must
        not exist); if one changed, nothing is written and the result is (False, rev)."""
        compare = [{"key": _b64(k), "target": "MOD", "result": "EQUAL", "mod_revision": r}
                   for k, r in (unless_changed or {}).items()]
        ops: list[dict[str, Any]] = [{"request_put": {"key": _b64(k), "value": _b64(v)}}
                                     for k, v in puts.items()]
        ops += [{"request_delete_range": {"key": _b64(k)}} for k in deletes]
        d = self._call("/v3/kv/txn", {"compare": compare, "success": ops})
        return bool(d.get("succeeded", False)), int(d["header"]["revision"])

    # -- leases ------------------------------------------------------------------------------
    def lease_grant(self, ttl: int) -> int:
        return int(self._call("/v3/lease/grant", {"TTL": ttl})["ID"])

    def lease_keepalive(self, lease: int) -> int:
        """Renew ``lease`` once; its remaining TTL (0: it had expired)."""
        d = self._call("/v3/lease/keepalive", {"ID": lease})
        return int(d.get("result", d).get("TTL", 0))

    def lease_revoke(self, lease: int) -> None:
        try:
            self._call("/v3/lease/revoke", {"ID": lease})
        except EtcdError as e:
            if "not found" not in str(e):
                raise

    # -- watch -------------------------------------------------------------------------------
    def watch(self, key: bytes | str, *, prefix: bool = False, start_revision: int = 0,
              timeout: float | None = None) -> Iterator[tuple[int, list[Event]]]:
        """Events on ``key`` (or under it) from ``start_revision`` on, as (revision,
        events) batches, until the connection ends (then :class:`Unavailable`), or
        ``timeout`` seconds pass without a message (a ``(revision, [])`` heartbeat is
        yielded then; the caller decides).  A compacted start revision raises
        :class:`Compacted`."""
        req: dict[str, Any] = {"key": _b64(key)}
        if prefix:
            req["range_end"] = _b64(prefix_end(key))
        if start_revision:
            req["start_revision"] = start_revision
        errors = []
        for i in self._order():
            conn = self._conn(i, timeout if timeout is not None else self.timeout)
            try:
                conn.request("POST", "/v3/watch", json.dumps({"create_request": req}),
                             self._headers(True))
                resp = conn.getresponse()
                if resp.status != 200:
                    raise EtcdError(f"etcd watch: HTTP {resp.status}: {resp.read()[:200]!r}")
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                errors.append(f"{self._name(i)}: {e}")
                continue
            self._preferred = i
            try:
                yield from self._stream(resp, conn)
            finally:
                conn.close()
            return
        raise Unavailable("no etcd member answered the watch: " + "; ".join(errors))

    def _stream(self, resp: Any, conn: Any) -> Iterator[tuple[int, list[Event]]]:
        buf = b""
        last = 0
        while True:
            try:
                chunk = resp.read1(65536)
            except TimeoutError:
                yield last, []
                continue
            except (OSError, http.client.HTTPException) as e:
                raise Unavailable(f"etcd watch stream broke: {e}") from None
            if not chunk:
                raise Unavailable("etcd watch stream ended (member down?)")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                d = json.loads(line)
                if "error" in d:
                    err = d["error"]
                    raise EtcdError(f"etcd watch: {err.get('message', err)}",
                                    code=err.get("grpc_code"))
                r = d.get("result", {})
                if int(r.get("compact_revision", 0) or 0):
                    raise Compacted("etcd watch: the start revision was compacted",
                                    int(r["compact_revision"]))
                if r.get("canceled"):
                    raise EtcdError(f"etcd watch canceled: {r.get('cancel_reason', '')}")
                last = int(r.get("header", {}).get("revision", last))
                evs = [Event(e.get("type", "PUT"), _kv(e["kv"])) for e in r.get("events", [])]
                if evs:
                    yield last, evs

    # -- cluster and auth --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self._call("/v3/maintenance/status", {})

    def compact(self, revision: int) -> None:
        self._call("/v3/kv/compaction", {"revision": revision, "physical": True})

    def add_user(self, name: str, password: str) -> None:
        self._call("/v3/auth/user/add", {"name": name, "password": password})

    def add_role(self, role: str, grants: list[tuple[str, bytes | str, bool]]) -> None:
        """A role with ``grants``: (``READ``/``WRITE``/``READWRITE``, key, prefix?)."""
        self._call("/v3/auth/role/add", {"name": role})
        for perm, key, prefix in grants:
            p: dict[str, Any] = {"permType": perm, "key": _b64(key)}
            if prefix:
                p["range_end"] = _b64(prefix_end(key))
            self._call("/v3/auth/role/grant", {"name": role, "perm": p})

    def grant_role(self, user: str, role: str) -> None:
        self._call("/v3/auth/user/grant", {"user": user, "role": role})

    def enable_auth(self) -> None:
        self._call("/v3/auth/enable", {})


def wait_ready(client: Client, timeout: float = 20.0) -> None:
    """Until a member answers (a freshly started cluster elects a leader first)."""
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            client.get("/")
            return
        except EtcdError as e:
            last = e
            time.sleep(0.1)
    raise Unavailable(f"etcd not ready after {timeout:g} s: {last}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


__all__ = ["TLS", "Client", "Compacted", "EtcdError", "Event", "KeyValue",
           "PermissionDenied", "Unavailable", "free_port", "prefix_end", "wait_ready"]
