"""Kafka security for every Kafka client kato-stream creates, in one place.

Why: a secured cluster (TLS, SASL over TLS: what Confluent Cloud, Amazon MSK and Aiven ask
for) must be spoken to the same way by each client the project opens - the worker's Faust
consumer, producer and admin, the LTM follower, the persister, the group watchdog, the
gateway, the CLI and the tools.  One client left on PLAINTEXT fails late and obscurely (a
worker that starts, then hangs in its follower).  So the settings
(``KATO_STREAM_KAFKA_SECURITY_PROTOCOL`` and friends) are turned into

* aiokafka's keyword options by :func:`client_options`, passed as ``**`` to every
  ``AIOKafkaConsumer``/``AIOKafkaProducer``/``AIOKafkaAdminClient`` (``tests/test_kafka.py``
  checks each construction in the package), and
* Faust's ``broker_credentials`` by :func:`faust_credentials` (Faust hands them to its own
  consumer, producer and topic admin);

both validated by :func:`check`, whose :class:`KafkaSecurityError` names the environment
variable to fix.  Nothing here logs or returns a password outside the options themselves.
The embedded broker (``kato_stream/embedded``) is started by kato-stream on loopback and
speaks PLAINTEXT only: its readiness probe stays plaintext.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import fields
from typing import Any

from kato_stream.settings import Settings, SettingsError

__all__ = [
    "KafkaSecurityError",
    "check",
    "client_options",
    "faust_credentials",
    "known_options",
    "ssl_context",
]

_TLS = frozenset({"SSL", "SASL_SSL"})
_SASL = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})

_KNOWN: dict[str, dict[str, Any]] = {}
"""bootstrap -> the options :func:`client_options` last built for it (:func:`known_options`)."""


class KafkaSecurityError(SettingsError):
    """The Kafka security settings are incomplete or point at unusable files."""


def _env(name: str) -> str:
    """The environment variable of the setting ``name``."""
    for f in fields(Settings):
        if f.name == name:
            return str(f.metadata["env"])
    raise KeyError(name)


def check(settings: Settings) -> None:
    """Raise :class:`KafkaSecurityError` unless the security settings make sense together:
    SASL protocols need a user name and password, TLS files must exist, and credentials or
    TLS files the chosen protocol would silently ignore are refused."""
    proto = settings.kafka_security_protocol
    p_env = _env("kafka_security_protocol")
    if proto in _SASL:
        missing = [
            _env(n)
            for n in ("kafka_sasl_username", "kafka_sasl_password")
            if not getattr(settings, n)
        ]
        if missing:
            raise KafkaSecurityError(f"{p_env}={proto} needs {' and '.join(missing)}")
    else:
        given = [
            _env(n) for n in ("kafka_sasl_username", "kafka_sasl_password") if getattr(settings, n)
        ]
        if given:
            raise KafkaSecurityError(
                f"{' and '.join(given)} set, but {p_env}={proto} sends no SASL credentials "
                "(use SASL_SSL or SASL_PLAINTEXT)"
            )
    for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        path = getattr(settings, name)
        if not path:
            continue
        if proto not in _TLS:
            raise KafkaSecurityError(
                f"{_env(name)} set, but {p_env}={proto} does not use TLS (use SSL or SASL_SSL)"
            )
        if not os.path.isfile(path):
            raise KafkaSecurityError(f"{_env(name)}={path!r}: no such file")
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise KafkaSecurityError(
            f"{_env('kafka_ssl_keyfile')} set without {_env('kafka_ssl_certfile')}"
        )


def _no_key_password() -> str:
    # called by OpenSSL only for an encrypted private key: without this it would prompt on
    # the terminal (and a worker under a supervisor would hang)
    raise KafkaSecurityError(
        f"{_env('kafka_ssl_keyfile')} (or {_env('kafka_ssl_certfile')}): the private key is "
        "encrypted; give an unencrypted PEM key (openssl pkey -in KEY -out KEY.plain)"
    )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The client TLS context of the settings (None for PLAINTEXT and SASL_PLAINTEXT):
    verifies the brokers against ``KATO_STREAM_KAFKA_SSL_CAFILE`` (or the system's trust
    store) including their host name, and presents the client certificate if one is set."""
    check(settings)
    if settings.kafka_security_protocol not in _TLS:
        return None
    from aiokafka.helpers import create_ssl_context

    cafile = settings.kafka_ssl_cafile or None
    try:
        ctx: ssl.SSLContext = create_ssl_context(cafile=cafile)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise KafkaSecurityError(
            f"{_env('kafka_ssl_cafile')}={cafile!r}: not a usable PEM CA bundle: {exc}"
        ) from None
    if settings.kafka_ssl_certfile:
        try:
            ctx.load_cert_chain(
                settings.kafka_ssl_certfile,
                settings.kafka_ssl_keyfile or None,
                password=_no_key_password,
            )
        except (ssl.SSLError, OSError) as exc:
            raise KafkaSecurityError(
                f"{_env('kafka_ssl_certfile')}={settings.kafka_ssl_certfile!r}, "
                f"{_env('kafka_ssl_keyfile')}={settings.kafka_ssl_keyfile!r}: not a PEM "
                f"certificate and its private key: {exc}"
            ) from None
    return ctx


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword options for ``settings``' security: ``{}`` for PLAINTEXT (aiokafka's
    defaults), else ``security_protocol`` with ``ssl_context`` (TLS) and the SASL mechanism,
    user name and password (SASL).  Pass them as ``**client_options(settings)`` to every
    aiokafka client; raises :class:`KafkaSecurityError` (see :func:`check`)."""
    proto = settings.kafka_security_protocol
    ctx = ssl_context(settings)  # checks
    opts: dict[str, Any] = {}
    if proto != "PLAINTEXT":
        opts["security_protocol"] = proto
    if ctx is not None:
        opts["ssl_context"] = ctx
    if proto in _SASL:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = settings.kafka_sasl_password
    _KNOWN[settings.kafka_bootstrap] = opts
    return dict(opts)


def known_options(bootstrap: str) -> dict[str, Any]:
    """The options :func:`client_options` last built for ``bootstrap`` in this process
    (``{}`` if none): for the few calls that receive a bare bootstrap string from code that
    does not pass options yet (``continuity.fetch_range`` from the worker's agent)."""
    return dict(_KNOWN.get(bootstrap, {}))


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for ``settings`` (None for PLAINTEXT):
    ``faust.SSLCredentials`` for SSL, ``faust.SASLCredentials`` (with the TLS context for
    SASL_SSL) for SASL.  Faust turns them into the same aiokafka options as
    :func:`client_options` (``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``)
    for its consumer, producer and the client that creates its topics."""
    proto = settings.kafka_security_protocol
    opts = client_options(settings)  # checks, and records the bootstrap's options
    if proto == "PLAINTEXT":
        return None
    import faust

    if proto == "SSL":
        return faust.SSLCredentials(opts["ssl_context"])
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ssl_context=opts.get("ssl_context"),
        mechanism=settings.kafka_sasl_mechanism,
    )
