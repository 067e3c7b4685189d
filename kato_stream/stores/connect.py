"""One constructor per store client, each applying the store credentials of the settings.

Why: Redis clients are opened in several places (the Redis store, the worker's session lists,
prediction cache and memory settings, the gateway), ClickHouse and Qdrant by their stores;
a password, an API key or TLS set in one place and forgotten in another fails only when that
path runs.  So every client is built here, from the URL plus the settings:

* Redis: ``KATO_STREAM_REDIS_PASSWORD`` (wins over the URL's), ``KATO_STREAM_REDIS_TLS``
  (``redis://`` becomes ``rediss://``) and ``KATO_STREAM_REDIS_SSL_CAFILE``;
* ClickHouse: ``KATO_STREAM_CLICKHOUSE_USER``/``_PASSWORD`` (win over the URL's) and
  ``KATO_STREAM_CLICKHOUSE_SECURE`` (also implied by an ``https://`` URL);
* Qdrant: ``KATO_STREAM_QDRANT_API_KEY`` and ``KATO_STREAM_QDRANT_HTTPS`` (``http://``
  becomes ``https://``).

The embedded components (chdb, Qdrant local mode, the embedded Redis) take no credentials:
they are ignored there.  A setting that cannot apply raises :class:`StoreSettingsError`
naming the environment variable.  The ``*_options`` functions return what the client is
given (tests inspect them); the returned URLs carry no password.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from kato_stream.settings import Settings, SettingsError

if TYPE_CHECKING:
    import redis
    import redis.asyncio as aioredis
    from clickhouse_connect.driver.client import Client as ClickHouseClient
    from qdrant_client import QdrantClient

__all__ = [
    "StoreSettingsError",
    "clickhouse_client",
    "clickhouse_options",
    "qdrant_client",
    "qdrant_options",
    "redis_client",
    "redis_hint",
    "redis_options",
    "redis_sync_client",
]


class StoreSettingsError(SettingsError):
    """A store credential or TLS setting cannot apply to the configured URL."""


def _without_password(url: str) -> str:
    """``url`` with the password of its user info removed (the user name stays)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


# -- Redis -------------------------------------------------------------------------------


def redis_options(settings: Settings | None, url: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(url, keyword options)`` of a Redis client for ``settings`` (default URL:
    ``settings.redis_url``; ``settings`` None = no credentials)."""
    if settings is None:
        if url is None:
            raise ValueError("redis_options needs settings or a url")
        return url, {}
    url = settings.redis_url if url is None else url
    parts = urlsplit(url)
    scheme = parts.scheme
    opts: dict[str, Any] = {}
    if settings.redis_tls and scheme != "rediss":
        if scheme != "redis":
            raise StoreSettingsError(
                f"KATO_STREAM_REDIS_TLS=true needs a redis:// or rediss:// URL, not {scheme}://"
            )
        scheme = "rediss"
    if settings.redis_ssl_cafile:
        if scheme != "rediss":
            raise StoreSettingsError(
                "KATO_STREAM_REDIS_SSL_CAFILE set, but Redis is not reached over TLS "
                "(set KATO_STREAM_REDIS_TLS=true or use a rediss:// URL)"
            )
        if not os.path.isfile(settings.redis_ssl_cafile):
            raise StoreSettingsError(
                f"KATO_STREAM_REDIS_SSL_CAFILE={settings.redis_ssl_cafile!r}: no such file"
            )
        opts["ssl_ca_certs"] = settings.redis_ssl_cafile
    if settings.redis_password:
        # the URL's options would win over keyword options (redis-py's from_url): drop its own
        url = _without_password(url)
        opts["password"] = settings.redis_password
    if scheme != parts.scheme:
        url = urlunsplit(urlsplit(url)._replace(scheme=scheme))
    return url, opts


def redis_hint(settings: Settings | None, url: str, exc: BaseException) -> str:
    """What to check when a Redis client at ``url`` failed with ``exc`` ("" if no idea): the
    password, the CA file, or TLS when a TLS-only server reset a plaintext connection."""
    text = str(exc).lower()
    if any(k in text for k in ("authenticat", "noauth", "wrongpass", "username-password")):
        return "; check KATO_STREAM_REDIS_PASSWORD (or the password in KATO_STREAM_REDIS_URL)"
    if "certificate verify failed" in text:
        return "; check KATO_STREAM_REDIS_SSL_CAFILE (the CA that signed the server's certificate)"
    target = redis_options(settings, url)[0] if settings is not None else url
    if not target.startswith("rediss://") and ("reset by peer" in text or "closed by" in text):
        return "; a TLS-only port? set KATO_STREAM_REDIS_TLS=true or use a rediss:// URL"
    return ""


def redis_client(
    settings: Settings | None, url: str | None = None, **kwargs: Any
) -> aioredis.Redis:
    """An asyncio Redis client (``redis.asyncio``) for ``settings``; ``kwargs`` are passed
    on (timeouts)."""
    import redis.asyncio as aioredis

    target, opts = redis_options(settings, url)
    return aioredis.Redis.from_url(target, **opts, **kwargs)


def redis_sync_client(
    settings: Settings | None, url: str | None = None, **kwargs: Any
) -> redis.Redis:
    """A blocking Redis client (``redis.Redis``) for ``settings``; ``kwargs`` are passed on."""
    import redis

    target, opts = redis_options(settings, url)
    return redis.Redis.from_url(target, **opts, **kwargs)


# -- ClickHouse --------------------------------------------------------------------------


def clickhouse_options(settings: Settings, url: str) -> dict[str, Any]:
    """``clickhouse_connect.get_client`` keyword options for the server at ``url``."""
    opts: dict[str, Any] = {"dsn": _without_password(url) if settings.clickhouse_password else url}
    if settings.clickhouse_user:
        opts["username"] = settings.clickhouse_user
    if settings.clickhouse_password:
        opts["password"] = settings.clickhouse_password
    # clickhouse-connect takes TLS from ``secure`` or the port (8443/443), not the scheme
    if settings.clickhouse_secure or urlsplit(url).scheme == "https":
        opts["secure"] = True
    return opts


def clickhouse_client(
    settings: Settings, url: str = "", *, chdb_path: str | None = None, **kwargs: Any
) -> ClickHouseClient:
    """A ClickHouse client: embedded chdb at ``chdb_path`` (no credentials), else the server
    at ``url`` with the settings' user, password and TLS; ``kwargs`` (timeouts) go to the
    server client only."""
    import clickhouse_connect

    if chdb_path:
        return clickhouse_connect.get_client(interface="chdb", path=chdb_path)
    return clickhouse_connect.get_client(**clickhouse_options(settings, url), **kwargs)


# -- Qdrant ------------------------------------------------------------------------------


def qdrant_options(settings: Settings, url: str) -> dict[str, Any]:
    """``QdrantClient`` keyword options for the server at ``url``."""
    opts: dict[str, Any] = {"url": url}
    if settings.qdrant_https:
        # qdrant-client keeps an http:// URL's scheme whatever ``https`` says
        if url.startswith("http://"):
            opts["url"] = "https://" + url[len("http://") :]
        opts["https"] = True
    if settings.qdrant_api_key:
        opts["api_key"] = settings.qdrant_api_key
    return opts


def qdrant_client(
    settings: Settings, url: str = "", *, path: str | None = None, **kwargs: Any
) -> QdrantClient:
    """A Qdrant client: local mode at ``path`` (or ``url`` ``":memory:"``), no credentials;
    else the server at ``url`` with the settings' API key and TLS; ``kwargs`` (timeout) go
    to the server client only."""
    from qdrant_client import QdrantClient

    if path is not None:
        return QdrantClient(path=path)
    if url == ":memory:":
        return QdrantClient(location=":memory:")
    return QdrantClient(**qdrant_options(settings, url), **kwargs)
