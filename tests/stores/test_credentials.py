"""Store credentials (kato_stream/stores/connect.py) reach every store client.

* Redis, for real: Debian's ``redis-server`` started here with ``--requirepass`` and TLS
  only (``--port 0 --tls-port``), a CA and server certificate made with ``openssl``.  Every
  Redis client the package builds (the Redis store, the session lists, the prediction
  cache, the worker's memory settings, the gateway) connects with the password and TLS of
  the settings, and fails clearly without them.
* ClickHouse and Qdrant servers cannot run here.  What is checked instead: the options the
  real ``clickhouse_connect.get_client`` / ``QdrantClient`` are given, the constructed
  Qdrant client, and what each store actually sends on the wire to a local listener that
  records the first bytes of every connection: the HTTP ``Authorization`` (ClickHouse) or
  ``api-key`` (Qdrant) header, or a TLS ClientHello when TLS is set.  Not tested: a real
  ClickHouse/Qdrant server accepting those credentials or a TLS handshake with one.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import dataclasses
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kato_stream.embedded import free_port
from kato_stream.redact import redact_url
from kato_stream.settings import Settings
from kato_stream.stores import ClickHouseStore, QdrantStore, RedisStore
from kato_stream.stores.connect import (
    StoreSettingsError,
    clickhouse_options,
    qdrant_client,
    qdrant_options,
    redis_client,
    redis_options,
    redis_sync_client,
)
from kato_stream.stores.errors import StoreUnavailableError
from kato_stream.stores.lists import ListStore
from kato_stream.stores.prediction_cache import PredictionCache
from tests.tlskit import Pki, ensure_binary, make_pki

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Redis-s3cret"
OPENSSL = ensure_binary("openssl", "openssl")
REDIS = ensure_binary("redis-server", "redis-server")


# -- a password- and TLS-protected redis-server ----------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if OPENSSL is None:
        pytest.skip("openssl is not installed and could not be installed")
    return make_pki(tmp_path_factory.mktemp("store-pki"))


@pytest.fixture(scope="module")
def secured_redis(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server on 127.0.0.1:<port> speaking only TLS and asking for ``SECRET``."""
    if REDIS is None:
        pytest.skip("redis-server is not installed and could not be installed")
    d = tmp_path_factory.mktemp("secured-redis")
    port = free_port()
    argv = [
        REDIS,
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", pki.server_cert,
        "--tls-key-file", pki.server_key,
        "--tls-ca-cert-file", pki.ca,
        "--tls-auth-clients", "no",
        "--requirepass", SECRET,
        "--bind", "127.0.0.1",
        "--dir", str(d),
        "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip
    log = open(d / "redis.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while b"Ready to accept connections" not in (d / "redis.log").read_bytes():
            assert proc.poll() is None, (d / "redis.log").read_text()
            assert time.monotonic() < deadline, (d / "redis.log").read_text()
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()  # by pid: the one this fixture started
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _redis_settings(port: int, pki: Pki, **over: object) -> Settings:
    s = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_tls=True,
        redis_ssl_cafile=pki.ca,
        redis_password=SECRET,
        store_timeout=3.0,
    )
    return dataclasses.replace(s, **over)


async def test_every_redis_client_connects_with_password_and_tls(
    secured_redis: int, pki: Pki
) -> None:
    s = _redis_settings(secured_redis, pki)
    async with RedisStore(s) as store:  # the KB and hot-path store
        await store.client.set("kato-cred-test", "1")
        assert await store.client.get("kato-cred-test") == b"1"
    lists = ListStore(s)  # the worker's session lists
    await lists.start()
    await lists.stop()
    client = redis_client(s)  # the gateway's client (Gateway._start)
    assert await client.ping()
    await client.aclose()
    cache = PredictionCache.from_settings(s)  # the prediction cache (blocking client)
    await cache.start()
    try:
        assert cache._r is not None and cache._r.ping()
    finally:
        await cache.stop()
    with redis_sync_client(s) as sync:  # the worker's CONFIG SET maxmemory client
        assert sync.ping()


async def test_a_password_in_the_url_works_and_the_setting_wins(
    secured_redis: int, pki: Pki
) -> None:
    in_url = _redis_settings(
        secured_redis,
        pki,
        redis_password="",
        redis_url=f"rediss://:{SECRET}@127.0.0.1:{secured_redis}/0",
    )
    async with RedisStore(in_url) as store:
        assert await store.client.ping()
    wins = _redis_settings(
        secured_redis, pki, redis_url=f"redis://:wrong@127.0.0.1:{secured_redis}/0"
    )
    async with RedisStore(wins) as store:
        assert await store.client.ping()


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"redis_password": ""}, "check KATO_STREAM_REDIS_PASSWORD"),
        ({"redis_password": "not-it"}, "check KATO_STREAM_REDIS_PASSWORD"),
        ({"redis_tls": False, "redis_ssl_cafile": ""}, "set KATO_STREAM_REDIS_TLS=true"),
    ],
)
async def test_without_the_credentials_redis_fails_clearly(
    secured_redis: int, pki: Pki, over: dict[str, object], why: str
) -> None:
    s = _redis_settings(secured_redis, pki, **over)
    with pytest.raises(StoreUnavailableError) as err:
        async with RedisStore(s):
            pass
    text = str(err.value)
    assert why in text and f"127.0.0.1:{secured_redis}" in text
    assert SECRET not in text and "not-it" not in text


async def test_a_redis_with_a_certificate_of_another_ca_is_refused(
    secured_redis: int, pki: Pki
) -> None:
    s = _redis_settings(secured_redis, pki, redis_ssl_cafile=pki.other_ca)
    with pytest.raises(StoreUnavailableError, match="certificate verify failed.*_SSL_CAFILE"):
        async with RedisStore(s):
            pass


def test_redis_options() -> None:
    base = Settings(redis_url="redis://u:urlpw@h:6380/2")
    assert redis_options(base) == ("redis://u:urlpw@h:6380/2", {})
    url, opts = redis_options(dataclasses.replace(base, redis_password="pw", redis_tls=True))
    assert url == "rediss://u@h:6380/2" and opts == {"password": "pw"}
    with pytest.raises(StoreSettingsError, match="KATO_STREAM_REDIS_SSL_CAFILE"):
        redis_options(dataclasses.replace(base, redis_ssl_cafile="/etc/hostname"))
    with pytest.raises(StoreSettingsError, match="KATO_STREAM_REDIS_SSL_CAFILE.*no such file"):
        redis_options(dataclasses.replace(base, redis_tls=True, redis_ssl_cafile="/nope.pem"))
    with pytest.raises(StoreSettingsError, match="KATO_STREAM_REDIS_TLS"):
        redis_options(dataclasses.replace(base, redis_url="unix:///tmp/r.sock", redis_tls=True))


def test_no_redis_client_is_built_outside_connect() -> None:
    """Every Redis client of the package comes from stores/connect.py (the embedded stack's
    readiness probe excepted: it talks to the Redis it started, without credentials)."""
    allowed = {"kato_stream/stores/connect.py", "kato_stream/embedded/redis.py"}
    found = []
    for path in sorted((ROOT / "kato_stream").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                f = node.func
                owner = ast.unparse(f.value)
                if (
                    f.attr == "from_url"
                    and "redis" in owner.lower()
                    or (f.attr in ("Redis", "StrictRedis") and "redis" in owner.lower())
                ):
                    found.append(f"{rel}:{node.lineno}")
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Redis":
                found.append(f"{rel}:{node.lineno}")
    assert [f for f in found if f.split(":")[0] not in allowed] == []


# -- ClickHouse and Qdrant: options, constructed clients, what goes on the wire ---------------


class FirstBytes:
    """A TCP listener on 127.0.0.1 that keeps the first bytes of every connection and answers
    an HTTP request with 401 (a TLS ClientHello gets the connection closed)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                        if data[:1] == b"\x16":  # TLS handshake record: no HTTP follows
                            break
                    self.seen.append(data)
                    if data[:1] != b"\x16":
                        conn.sendall(
                            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n"
                        )
                except OSError:
                    self.seen.append(data)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def listener() -> Iterator[FirstBytes]:
    fb = FirstBytes()
    yield fb
    fb.close()


def _header(raw: bytes, name: str) -> str | None:
    for line in raw.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


def test_clickhouse_options() -> None:
    s = Settings(clickhouse_user="kato", clickhouse_password="ch-pw")
    assert clickhouse_options(s, "http://u:urlpw@h:8123/db") == {
        "dsn": "http://u@h:8123/db",
        "username": "kato",
        "password": "ch-pw",
    }
    assert clickhouse_options(Settings(), "http://u:urlpw@h:8123") == {
        "dsn": "http://u:urlpw@h:8123"
    }
    assert clickhouse_options(Settings(clickhouse_secure=True), "http://h:9440")["secure"]
    assert clickhouse_options(Settings(), "https://h:9440")["secure"]


async def test_clickhouse_sends_the_user_and_password(listener: FirstBytes) -> None:
    s = Settings(
        clickhouse_url=f"http://127.0.0.1:{listener.port}",
        clickhouse_user="kato",
        clickhouse_password="ch-s3cret",
        store_timeout=2.0,
    )
    with pytest.raises(StoreUnavailableError) as err:
        async with ClickHouseStore(s):
            pass
    assert "ch-s3cret" not in str(err.value)
    assert listener.seen, "the client never connected"
    auth = _header(listener.seen[0], "Authorization")
    assert auth is not None and auth.startswith("Basic ")
    assert base64.b64decode(auth[6:]).decode() == "kato:ch-s3cret"


async def test_clickhouse_secure_speaks_tls(listener: FirstBytes) -> None:
    s = Settings(
        clickhouse_url=f"http://127.0.0.1:{listener.port}",
        clickhouse_secure=True,
        store_timeout=2.0,
    )
    with pytest.raises(StoreUnavailableError):
        async with ClickHouseStore(s):
            pass
    assert listener.seen and all(b[:1] == b"\x16" for b in listener.seen)  # ClientHello


def test_qdrant_options_and_client() -> None:
    s = Settings(qdrant_api_key="qd-key", qdrant_https=True)
    opts = qdrant_options(s, "http://q.example:6333")
    assert opts == {"url": "https://q.example:6333", "https": True, "api_key": "qd-key"}
    c = qdrant_client(s, "http://q.example:6333", check_compatibility=False)
    try:
        remote = c._client  # qdrant_client.qdrant_remote.QdrantRemote: built, not connected
        assert remote.rest_uri == "https://q.example:6333"
        assert remote._rest_headers["api-key"] == "qd-key"
    finally:
        c.close()
    assert qdrant_options(Settings(), "http://q:6333") == {"url": "http://q:6333"}


async def test_qdrant_sends_the_api_key(listener: FirstBytes) -> None:
    s = Settings(
        qdrant_url=f"http://127.0.0.1:{listener.port}", qdrant_api_key="qd-s3cret", store_timeout=2
    )
    with pytest.warns(UserWarning, match="insecure"), pytest.raises(StoreUnavailableError) as err:
        async with QdrantStore(s):
            pass
    assert "qd-s3cret" not in str(err.value)
    assert listener.seen
    assert _header(listener.seen[0], "api-key") == "qd-s3cret"


async def test_qdrant_https_speaks_tls(listener: FirstBytes) -> None:
    s = Settings(qdrant_url=f"http://127.0.0.1:{listener.port}", qdrant_https=True, store_timeout=2)
    with pytest.raises(StoreUnavailableError):
        async with QdrantStore(s):
            pass
    assert listener.seen and all(b[:1] == b"\x16" for b in listener.seen)


def test_store_errors_show_urls_without_passwords() -> None:
    s = Settings(clickhouse_url="http://kato:pw-in-url@127.0.0.1:1/db", store_timeout=1)

    async def go() -> str:
        try:
            async with ClickHouseStore(s):
                pass
        except StoreUnavailableError as exc:
            return str(exc)
        raise AssertionError("connected to nothing")

    text = asyncio.run(go())
    assert "pw-in-url" not in text and redact_url(s.clickhouse_url) in text
