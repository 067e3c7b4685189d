"""Kafka security options (kato_stream/kafka.py): every Kafka client of the package gets them
(an AST scan), what they hold for each protocol and mechanism, Faust's credentials, the
errors that name the variable to fix, and that no password is printed.

The real TLS round trips (broker behind a TLS terminator, a worker over TLS) are in
tests/test_kafka_tls.py."""

from __future__ import annotations

import ast
import dataclasses
import ssl
import subprocess
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from kato_stream import cli
from kato_stream.gateway.client import StreamClient
from kato_stream.kafka import (
    KafkaSecurityError,
    check,
    client_options,
    faust_credentials,
    known_options,
)
from kato_stream.settings import Settings, SettingsError
from kato_stream.stream.app import faust_app_options

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kato_stream"
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "AIOKafkaClient"}
PLAINTEXT_ONLY = {
    # the embedded broker's readiness probe: noida-db is started by kato-stream itself on
    # loopback and has no TLS or SASL listener (EmbeddedStack.settings resets the security
    # settings to PLAINTEXT for the same reason)
    "kato_stream/embedded/broker.py",
}
PASSWORD = "s3cret-Pa55"


# -- every client construction passes the options ------------------------------------------


def _client_calls() -> list[tuple[str, int, str, ast.Call]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name in CLIENTS:
                out.append((str(path.relative_to(ROOT)), node.lineno, name, node))
    return out


def _passes_options(call: ast.Call) -> bool:
    """``**client_options(...)`` or ``**<...>kafka_options`` among the call's keywords."""
    for kw in call.keywords:
        if kw.arg is not None:
            continue
        v = kw.value
        if isinstance(v, ast.Call) and getattr(v.func, "id", None) == "client_options":
            return True
        if isinstance(v, ast.Name) and v.id == "kafka_options":
            return True
        if isinstance(v, ast.Attribute) and v.attr == "kafka_options":
            return True
    return False


def test_every_kafka_client_of_the_package_receives_the_security_options() -> None:
    calls = _client_calls()
    # the sites of issue 15: cli (2), gateway (2), embedded (1), topics (2), dev (2), tools
    # (replay, loadgen x2), the range reader of kafka.py (the tools' and the worker's hole
    # filler's), persist (2), ltm (3), group (2)
    assert len(calls) >= 20, [f"{p}:{n}" for p, n, _, _ in calls]
    missing = [
        f"{p}:{n} {name}(...)"
        for p, n, name, call in calls
        if p not in PLAINTEXT_ONLY and not _passes_options(call)
    ]
    assert not missing, "Kafka clients without **client_options(...)/**kafka_options: " + (
        ", ".join(missing)
    )
    # the allow-list holds only what is there (no stale entry hides a new file)
    assert {p for p, _, _, _ in calls} >= PLAINTEXT_ONLY


def test_the_worker_app_is_built_from_faust_app_options() -> None:
    tree = ast.parse((PACKAGE / "stream" / "app.py").read_text())
    apps = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "App"
        and getattr(n.func.value, "id", None) == "faust"
    ]
    assert len(apps) == 1
    (app,) = apps
    starred = [kw.value for kw in app.keywords if kw.arg is None]
    assert len(starred) == 1 and getattr(starred[0].func, "id", None) == "faust_app_options"
    assert [kw.arg for kw in app.keywords if kw.arg is not None] == []


# -- what the options hold ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a client certificate it signed, an encrypted key and a file that is no PEM."""
    d = tmp_path_factory.mktemp("pki")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=kato-test-ca")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
        "-subj", "/CN=kato-client")  # fmt: skip
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "client.pem", "-days", "2")  # fmt: skip
    run("pkey", "-in", "client.key", "-aes256", "-passout", "pass:x", "-out", "enc.key")
    (d / "junk.pem").write_text("not a certificate\n")
    return {n: str(d / f) for n, f in (
        ("ca", "ca.pem"), ("cert", "client.pem"), ("key", "client.key"),
        ("enc_key", "enc.key"), ("junk", "junk.pem"),
    )}  # fmt: skip


def _s(**env: str) -> Settings:
    return Settings.from_env({f"KATO_STREAM_KAFKA_{k.upper()}": v for k, v in env.items()})


def test_plaintext_gives_no_options() -> None:
    assert client_options(Settings()) == {}
    assert faust_credentials(Settings()) is None
    assert faust_app_options(Settings())["broker_credentials"] is None


def test_ssl_options_verify_the_broker_against_the_ca(pki: dict[str, str]) -> None:
    opts = client_options(_s(security_protocol="SSL", ssl_cafile=pki["ca"]))
    assert set(opts) == {"security_protocol", "ssl_context"}
    assert opts["security_protocol"] == "SSL"
    ctx = opts["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    subjects = [dict(x[0] for x in c["subject"]) for c in ctx.get_ca_certs()]
    assert {"commonName": "kato-test-ca"} in subjects


def test_ssl_without_a_ca_file_uses_the_system_trust_store() -> None:
    opts = client_options(_s(security_protocol="SSL"))
    ctx = opts["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_mutual_tls_loads_the_client_certificate(pki: dict[str, str]) -> None:
    s = _s(security_protocol="SSL", ssl_cafile=pki["ca"], ssl_certfile=pki["cert"],
           ssl_keyfile=pki["key"])  # fmt: skip
    assert isinstance(client_options(s)["ssl_context"], ssl.SSLContext)
    # a certificate file holding its key too
    both = Path(pki["cert"]).with_name("both.pem")
    both.write_text(Path(pki["cert"]).read_text() + Path(pki["key"]).read_text())
    s2 = _s(security_protocol="SSL", ssl_cafile=pki["ca"], ssl_certfile=str(both))
    assert isinstance(client_options(s2)["ssl_context"], ssl.SSLContext)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_options(mechanism: str) -> None:
    s = _s(security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
           sasl_username="kato", sasl_password=PASSWORD)  # fmt: skip
    assert client_options(s) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "kato",
        "sasl_plain_password": PASSWORD,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_options(mechanism: str, pki: dict[str, str]) -> None:
    s = _s(security_protocol="SASL_SSL", sasl_mechanism=mechanism, sasl_username="kato",
           sasl_password=PASSWORD, ssl_cafile=pki["ca"])  # fmt: skip
    opts = client_options(s)
    assert isinstance(opts.pop("ssl_context"), ssl.SSLContext)
    assert opts == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "kato",
        "sasl_plain_password": PASSWORD,
    }


def test_the_options_are_accepted_by_every_aiokafka_client(pki: dict[str, str]) -> None:
    """aiokafka checks its keyword options at construction (no connection is made)."""
    from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    s = _s(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
           sasl_password=PASSWORD, ssl_cafile=pki["ca"])  # fmt: skip
    opts = client_options(s)

    async def build() -> None:
        for cls in (AIOKafkaConsumer, AIOKafkaProducer, AIOKafkaAdminClient, AIOKafkaClient):
            c = cls(bootstrap_servers="127.0.0.1:1", **opts)
            client = getattr(c, "_client", None) or getattr(c, "client", c)
            assert client._security_protocol == "SASL_SSL"
            assert client._sasl_mechanism == "SCRAM-SHA-512"
            if isinstance(c, AIOKafkaProducer):
                await c.stop()
            elif isinstance(c, AIOKafkaAdminClient):
                await c.close()

    import asyncio

    asyncio.run(build())


# -- Faust ----------------------------------------------------------------------------------


def test_faust_ssl_credentials(pki: dict[str, str]) -> None:
    s = _s(security_protocol="SSL", ssl_cafile=pki["ca"])
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SSLCredentials)
    assert creds.protocol.value == "SSL"
    auth = credentials_to_aiokafka_auth(creds)
    assert auth["security_protocol"] == "SSL"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert [c["subject"] for c in auth["ssl_context"].get_ca_certs()] == [
        c["subject"] for c in client_options(s)["ssl_context"].get_ca_certs()
    ]


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512")],
)
def test_faust_sasl_credentials(protocol: str, mechanism: str, pki: dict[str, str]) -> None:
    env = {"security_protocol": protocol, "sasl_mechanism": mechanism,
           "sasl_username": "kato", "sasl_password": PASSWORD}  # fmt: skip
    if protocol == "SASL_SSL":
        env["ssl_cafile"] = pki["ca"]
    creds = faust_credentials(_s(**env))
    assert isinstance(creds, faust.SASLCredentials)
    assert PASSWORD not in repr(creds)
    # what Faust's consumer, producer and topic admin are given
    auth = credentials_to_aiokafka_auth(creds)
    mine = client_options(_s(**env))
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {
        k: v for k, v in mine.items() if k != "ssl_context"
    }
    assert (auth["ssl_context"] is None) == (protocol == "SASL_PLAINTEXT")


def test_the_worker_app_hands_the_credentials_to_faust_producer_and_consumer(
    pki: dict[str, str],
) -> None:
    s = dataclasses.replace(
        _s(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="kato",
            sasl_password=PASSWORD,
            ssl_cafile=pki["ca"],
        ),  # fmt: skip
        web_port=0,
    )
    app = faust.App("kato-kafka-opts", **faust_app_options(s))
    assert isinstance(app.conf.broker_credentials, faust.SASLCredentials)
    # the producer's aiokafka options (Producer._new_producer merges _settings_auth)
    auth = app.producer._settings_auth()
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-256"
    assert auth["sasl_plain_password"] == PASSWORD
    # the consumer's (Consumer._create_worker_consumer / _create_client_consumer)
    conf_auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert conf_auth["security_protocol"] == "SASL_SSL"
    assert conf_auth["sasl_plain_username"] == "kato"


# -- errors name the variable ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"security_protocol": "SASL_SSL"},
         ["KATO_STREAM_KAFKA_SASL_USERNAME", "KATO_STREAM_KAFKA_SASL_PASSWORD"]),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u"},
         ["KATO_STREAM_KAFKA_SASL_PASSWORD"]),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"},
         ["KATO_STREAM_KAFKA_SSL_CAFILE", "no such file"]),
        ({"security_protocol": "SSL", "ssl_certfile": "/nonexistent/c.pem"},
         ["KATO_STREAM_KAFKA_SSL_CERTFILE", "no such file"]),
        ({"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p",
          "ssl_keyfile": "/nonexistent/k.pem"},
         ["KATO_STREAM_KAFKA_SSL_KEYFILE", "no such file"]),
        ({"ssl_cafile": "/etc/hostname"}, ["KATO_STREAM_KAFKA_SSL_CAFILE", "PLAINTEXT"]),
        ({"security_protocol": "SSL", "sasl_username": "u"},
         ["KATO_STREAM_KAFKA_SASL_USERNAME", "SASL_SSL"]),
    ],
)  # fmt: skip
def test_incomplete_settings_fail_naming_the_variable(
    env: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(KafkaSecurityError) as err:
        client_options(_s(**env))
    assert isinstance(err.value, SettingsError)
    for n in names:
        assert n in str(err.value)
    with pytest.raises(KafkaSecurityError):
        faust_credentials(_s(**env))


def test_unusable_tls_files_fail_naming_the_variable(pki: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(KafkaSecurityError, match="KATO_STREAM_KAFKA_SSL_CAFILE"):
        client_options(_s(security_protocol="SSL", ssl_cafile=pki["junk"]))
    with pytest.raises(KafkaSecurityError, match="KATO_STREAM_KAFKA_SSL_KEYFILE.*without"):
        check(_s(security_protocol="SSL", ssl_keyfile=pki["key"]))
    with pytest.raises(KafkaSecurityError, match="KATO_STREAM_KAFKA_SSL_CERTFILE"):
        client_options(_s(security_protocol="SSL", ssl_certfile=pki["junk"]))
    # an encrypted key: a clear error, never OpenSSL's interactive passphrase prompt
    with pytest.raises(KafkaSecurityError, match="encrypted"):
        client_options(_s(security_protocol="SSL", ssl_certfile=pki["cert"],
                          ssl_keyfile=pki["enc_key"]))  # fmt: skip


def test_cli_reports_a_bad_setting_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KATO_STREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KATO_STREAM_KAFKA_SASL_USERNAME", "kato")
    monkeypatch.delenv("KATO_STREAM_KAFKA_SASL_PASSWORD", raising=False)
    for argv in (["topics", "check"], ["consume", "--count", "1"], ["group", "status"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: KATO_STREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs")
        assert "KATO_STREAM_KAFKA_SASL_PASSWORD" in err


# -- secrets ---------------------------------------------------------------------------------


def test_no_password_is_printed_or_in_a_repr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pki: dict[str, str]
) -> None:
    env = {
        "KATO_STREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KATO_STREAM_KAFKA_SASL_USERNAME": "kato",
        "KATO_STREAM_KAFKA_SASL_PASSWORD": PASSWORD,
        "KATO_STREAM_KAFKA_SSL_CAFILE": pki["ca"],
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["settings"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and "`''`" in out  # the table shows defaults only
    s = Settings.from_env()
    assert PASSWORD not in repr(s)
    opts = client_options(s)
    client: Any = StreamClient("127.0.0.1:1", "i", "o", kafka_options=opts)
    assert PASSWORD not in repr(client)
    assert PASSWORD not in repr(faust_credentials(s))


def test_clients_given_only_the_bootstrap_get_the_workers_options(pki: dict[str, str]) -> None:
    """agents.py calls continuity.fetch_range and app.py builds the GroupWatchdog with the
    bootstrap only: both get the options faust_app_options built for it."""
    from kato_stream.stream.group import GroupWatchdog

    s = dataclasses.replace(
        _s(security_protocol="SSL", ssl_cafile=pki["ca"]), kafka_bootstrap="10.1.2.3:9093"
    )
    faust_app_options(s)
    assert known_options(s.kafka_bootstrap)["security_protocol"] == "SSL"
    watchdog = GroupWatchdog(s.kafka_bootstrap, ["g"], interval=1.0)
    assert watchdog.kafka_options["security_protocol"] == "SSL"


def test_known_options_are_those_last_built_for_a_bootstrap(pki: dict[str, str]) -> None:
    s = dataclasses.replace(
        _s(security_protocol="SSL", ssl_cafile=pki["ca"]), kafka_bootstrap="10.9.8.7:9093"
    )
    client_options(s)
    assert known_options("10.9.8.7:9093")["security_protocol"] == "SSL"
    assert known_options("10.9.8.7:1") == {}
