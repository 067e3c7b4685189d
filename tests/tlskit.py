"""TLS test kit: a throwaway PKI made with ``openssl``, Debian binaries installed on demand,
and the embedded broker (noida-db) behind a real TLS terminator (``socat``).

noida-db has no TLS listener and no advertised-listener option: it advertises exactly its
``--host``/``--kafka-port``, so a terminator on another port would only serve the bootstrap
request (the client then follows the metadata to the plaintext port).  So the broker runs in
a private network namespace (``unshare --net``; ``--user --map-root-user`` when not root)
listening on *its own* ``127.0.0.1:P``, a ``socat`` inside that namespace bridges a Unix
socket (a file: visible from both namespaces) to it, and the TLS terminator listens on the
test's ``127.0.0.1:P`` and forwards to that socket.  The address the broker advertises is
then the terminator's, and every connection a client makes (bootstrap, partition leaders,
group coordinator) goes through TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kato_stream.embedded.broker import noida_binary
from kato_stream.embedded.ports import free_port


def ensure_binary(name: str, package: str) -> str | None:
    """The path of ``name``; if missing, ``apt-get install -y <package>`` (as root, where
    apt-get exists) and look again.  None only when it is absent and cannot be installed."""
    found = shutil.which(name)
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    r = subprocess.run(install, env=env, capture_output=True, timeout=600)
    if r.returncode != 0:  # stale package lists: refresh once
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(install, env=env, capture_output=True, timeout=600)
    return shutil.which(name)


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: str
    """CA certificate (PEM) that signed ``server`` and ``client``."""
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str
    """An unrelated CA: verifying the server against it must fail."""


def make_pki(d: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a second
    CA; RSA 2048, valid two days."""
    d.mkdir(parents=True, exist_ok=True)

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], cwd=d, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
            "-out", f"{ca}.pem", "-days", "2", "-subj", f"/CN=kato-test-{ca}")  # fmt: skip
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out",
            f"{who}.csr", "-subj", f"/CN=kato-test-{who}")  # fmt: skip
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext")  # fmt: skip
    return Pki(
        dir=d,
        ca=str(d / "ca.pem"),
        server_cert=str(d / "server.pem"),
        server_key=str(d / "server.key"),
        client_cert=str(d / "client.pem"),
        client_key=str(d / "client.key"),
        other_ca=str(d / "other-ca.pem"),
    )


def netns_prefix() -> list[str] | None:
    """``unshare`` arguments that give a command its own network namespace here (None: not
    possible)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    for argv in (["unshare", "--net"], ["unshare", "--user", "--map-root-user", "--net"]):
        r = subprocess.run([*argv, "ip", "link", "set", "lo", "up"], capture_output=True)
        if r.returncode == 0:
            return argv
    return None


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group this kit started (its leader is ``proc``), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    else:  # the leader is gone: its group may still hold children
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


async def wait_bootstrap(bootstrap: str, options: Mapping[str, Any], timeout: float) -> None:
    """Return once a client with ``options`` gets metadata from ``bootstrap``."""
    from aiokafka import AIOKafkaClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **options)
        try:
            await asyncio.wait_for(client.bootstrap(), 5)
            return
        except Exception as exc:  # noqa: BLE001 - not up yet
            last = exc
        finally:
            await client.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{bootstrap} did not answer over TLS within {timeout:.0f}s: {last!r}")


@dataclass
class TlsKafka:
    """noida-db in a private network namespace behind ``socat`` TLS on 127.0.0.1:``port``."""

    pki: Pki
    port: int
    workdir: Path
    broker: subprocess.Popen[bytes]
    terminator: subprocess.Popen[bytes]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )

    def stop(self) -> None:
        _stop_group(self.terminator)
        _stop_group(self.broker)


@contextmanager
def tls_kafka(
    pki: Pki, netns: list[str], socat: str, *, client_cert_required: bool = False
) -> Iterator[TlsKafka]:
    """Start the broker and its TLS terminator; stop both (by their process groups)."""
    work = Path(tempfile.mkdtemp(prefix="kato-tls-"))  # short: a Unix socket path < 108
    sock = work / "k.sock"
    port = free_port()
    inner = (
        "set -e\n"
        "ip link set lo up\n"
        f"'{noida_binary()}' start --only kafka --host 127.0.0.1 --kafka-port {port} "
        f"--data-dir '{work / 'noida'}' > '{work / 'noida.log'}' 2>&1 &\n"
        f"'{socat}' UNIX-LISTEN:'{sock}',fork,unlink-early TCP:127.0.0.1:{port} "
        f"> '{work / 'bridge.log'}' 2>&1 &\n"
        "wait\n"
    )
    broker = subprocess.Popen(
        [*netns, "sh", "-c", inner], start_new_session=True, stdin=subprocess.DEVNULL
    )
    verify = f"verify=1,cafile={pki.ca}" if client_cert_required else "verify=0"
    listen = (
        f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,"
        f"cert={pki.server_cert},key={pki.server_key},{verify}"
    )
    log = open(work / "terminator.log", "wb")  # noqa: SIM115
    terminator = subprocess.Popen(
        [socat, "-d", "-d", listen, f"UNIX-CONNECT:{sock}"],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    stack = TlsKafka(pki, port, work, broker, terminator)
    try:
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)
