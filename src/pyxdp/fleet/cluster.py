"""A real etcd cluster for tests, benchmarks and the demo: ``etcd`` processes started here,
with their data in a temporary directory, stopped (by PID) and removed afterwards.

Members listen on ``host`` (loopback by default, or a test-bed address when ``netns``
runs each member inside a namespace) on free ports.  With ``tls`` the client URLs are https
and clients must present a certificate the cluster's CA signed (``--client-cert-auth``);
:func:`make_pki` makes that CA and the certificates with ``openssl``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from pyxdp.fleet.etcd import TLS, Client, EtcdError, free_port, wait_ready


@dataclass
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: str
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: str = ""


@dataclass
class PKI:
    """Files of a test CA: ``ca``, the server pair, and client pairs by common name."""

    dir: str
    ca: str
    server_cert: str
    server_key: str
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)

    def tls(self, cn: str) -> TLS:
        cert, key = self.clients[cn]
        return TLS(self.ca, cert, key)


def _openssl(*args: str, cwd: str) -> None:
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])}: {p.stderr.strip()[-300:]}")


def make_pki(directory: str, clients: list[str], hosts: list[str]) -> PKI:
    """A CA, a server certificate for ``hosts`` (IP addresses), and one client
    certificate per name in ``clients`` (subject ``O=pyxdp fleet, OU=<name>``; EC P-256
    keys; valid one day)."""
    os.makedirs(directory, exist_ok=True)
    d = directory
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=d)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=pyxdp test CA", cwd=d)
    san = ",".join(f"IP:{h}" for h in hosts) + ",DNS:localhost"

    def pair(name: str, subject: str, ext: str) -> tuple[str, str]:
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out",
                 f"{name}.key", cwd=d)
        _openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj",
                 subject, cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(ext)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile",
                 f"{name}.ext", cwd=d)
        return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")

    scert, skey = pair("server", "/CN=etcd", f"subjectAltName={san}\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n")
    pki = PKI(d, os.path.join(d, "ca.pem"), scert, skey)
    for cn in clients:
        # no CommonName: etcd's JSON gateway refuses client certificates that carry one
        # (it could not use the CN as the user); the user is the token's, the
        # certificate only admits the client
        pki.clients[cn] = pair(f"client-{cn}", f"/O=pyxdp fleet/OU={cn}",
                               "extendedKeyUsage=clientAuth\n")
    return pki


class Cluster:
    """``size`` etcd members; a context manager (stopped and removed on exit)."""

    def __init__(self, size: int = 3, *, host: str = "127.0.0.1", pki: PKI | None = None,
                 netns: list[str] | None = None, hosts: list[str] | None = None,
                 exec_in: Any = None) -> None:
        if shutil.which("etcd") is None:
            raise EtcdError("etcd is not installed (Debian: apt-get install etcd-server)")
        self.dir = tempfile.mkdtemp(prefix="pyxdp-etcd-")
        self.pki = pki
        scheme = "https" if pki else "http"
        self.members: list[Member] = []
        for i in range(size):
            h = hosts[i] if hosts else host
            self.members.append(Member(
                f"m{i}", f"{scheme}://{h}:{free_port()}", f"http://{h}:{free_port()}",
                os.path.join(self.dir, f"m{i}"), netns[i] if netns else None))
        self.exec_in = exec_in        # (netns, argv) -> argv that runs inside the namespace

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def client(self, **kw: Any) -> Client:
        return Client(self.endpoints, **kw)

    def _argv(self, m: Member) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        argv = ["etcd", "--name", m.name, "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", os.path.basename(self.dir),
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--logger", "zap", "--log-level", "warn", "--enable-v2=false"]
        if self.pki:
            argv += ["--cert-file", self.pki.server_cert, "--key-file", self.pki.server_key,
                     "--trusted-ca-file", self.pki.ca, "--client-cert-auth"]
        if m.netns and self.exec_in:
            argv = self.exec_in(m.netns, argv)
        return argv

    def start(self, index: int | None = None) -> None:
        for i, m in enumerate(self.members):
            if index is not None and i != index:
                continue
            if m.proc is not None and m.proc.poll() is None:
                continue
            with open(os.path.join(self.dir, f"{m.name}.log"), "ab") as log:
                m.proc = subprocess.Popen(self._argv(m), stdout=log, stderr=log,
                                          start_new_session=True)

    def wait(self, client: Client | None = None, timeout: float = 30.0) -> None:
        wait_ready(client or self.client(), timeout)

    def stop(self, index: int) -> None:
        """Stop member ``index`` (SIGTERM to the PID this cluster started)."""
        m = self.members[index]
        if m.proc is None or m.proc.poll() is not None:
            return
        m.proc.send_signal(signal.SIGTERM)
        try:
            m.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait(timeout=10)

    def close(self) -> None:
        for i in range(len(self.members)):
            with contextlib.suppress(Exception):
                self.stop(i)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        self.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                dead = [m for m in self.members if m.proc and m.proc.poll() is not None]
                if dead:
                    with open(os.path.join(self.dir, f"{dead[0].name}.log"), "rb") as f:
                        tail = f.read()[-600:].decode(errors="replace")
                    raise EtcdError(f"etcd member {dead[0].name} exited: {tail}")
                try:
                    if self.pki is None:
                        self.wait(timeout=0.5)
                    return self
                except EtcdError:
                    continue
            raise EtcdError("etcd cluster did not become ready in 30 s")
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PKI", "Cluster", "Member", "make_pki"]
