"""Kafka over real TLS: the embedded broker behind a ``socat`` TLS terminator whose address
is the one the broker advertises (tests/tlskit.py explains how), a CA and certificates made
here with ``openssl``.

* kato-stream's own clients (topic admin, publisher, consumer) configured only through
  ``KATO_STREAM_KAFKA_*`` round-trip records over TLS, and over SASL_SSL (PLAIN: noida-db
  accepts any PLAIN credentials and offers no SCRAM, so a wrong password and SCRAM are
  not tested here);
* a client verifying against another CA, or speaking PLAINTEXT to the TLS port, fails;
* mutual TLS: without a client certificate the terminator refuses the client;
* a real worker (``kato-stream worker``) started with SSL settings answers commands.

Skipped only when ``socat``/``openssl`` are missing and cannot be installed (apt-get, as
root); a host that cannot make a network namespace fails with the reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from kato_stream.cli import consume_records, publish_lines
from kato_stream.kafka import client_options
from kato_stream.settings import Settings
from kato_stream.stream import codecs
from kato_stream.stream.continuity import fetch_range
from kato_stream.topics import TopicSpec, create_topics, describe_partitions, topic_specs
from tests.tlskit import (
    Pki,
    TlsKafka,
    ensure_binary,
    make_pki,
    netns_prefix,
    tls_kafka,
    wait_bootstrap,
)

SOCAT = ensure_binary("socat", "socat")
OPENSSL = ensure_binary("openssl", "openssl")
pytestmark = pytest.mark.skipif(
    SOCAT is None or OPENSSL is None,
    reason="socat and openssl are needed for the TLS terminator and test certificates, "
    "and could not be installed (apt-get install -y socat openssl, as root)",
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("kafka-pki"))


@pytest.fixture(scope="module")
def netns() -> list[str]:
    argv = netns_prefix()
    if argv is None:
        pytest.fail(
            "cannot create a network namespace (unshare --net, or --user --map-root-user "
            "--net): the TLS test needs one to put noida-db's advertised address behind TLS"
        )
    return argv


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, netns: list[str]) -> Iterator[TlsKafka]:
    assert SOCAT is not None
    with tls_kafka(pki, netns, SOCAT) as stack:
        try:
            asyncio.run(wait_bootstrap(stack.bootstrap, _opts(stack, pki.ca), 60))
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{stack.logs()}")
        yield stack


def _settings(stack: TlsKafka, **env: str) -> Settings:
    base = {"KATO_STREAM_KAFKA_BOOTSTRAP": stack.bootstrap, **env}
    return Settings.from_env(base)


def _opts(stack: TlsKafka, cafile: str) -> dict[str, object]:
    return client_options(
        _settings(
            stack,
            KATO_STREAM_KAFKA_SECURITY_PROTOCOL="SSL",
            KATO_STREAM_KAFKA_SSL_CAFILE=cafile,
        )
    )


def _envelope(session: str, i: int) -> bytes:
    env = {"op": "observe", "session_id": session, "node_id": "tls", "msg_id": f"m{i}",
           "payload": {"strings": [f"w{i}"]}}  # fmt: skip
    return codecs.dumps(env)


async def _round_trip(s: Settings) -> None:
    opts = client_options(s)
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    made = await create_topics(s.kafka_bootstrap, [TopicSpec(topic, 2, {})], kafka_options=opts)
    assert made == [topic]
    lines = [_envelope("s1", i) for i in range(5)]
    assert await publish_lines(s.kafka_bootstrap, topic, lines, kafka_options=opts) == 5
    recs = await consume_records(s.kafka_bootstrap, topic, count=5, timeout=20, kafka_options=opts)
    assert sorted(r.value for r in recs) == sorted(lines)
    assert {r.key for r in recs} == {b"s1"}
    # the worker's hole filler gets only the bootstrap (agents.py): the options built for it
    (part,) = {r.partition for r in recs}
    holes = await fetch_range(s.kafka_bootstrap, topic, part, 1, 4, timeout=20)
    assert [r.offset for r in holes] == [1, 2, 3]


def test_records_round_trip_over_tls(tls_broker: TlsKafka, pki: Pki) -> None:
    s = _settings(
        tls_broker,
        KATO_STREAM_KAFKA_SECURITY_PROTOCOL="SSL",
        KATO_STREAM_KAFKA_SSL_CAFILE=pki.ca,
    )
    asyncio.run(_round_trip(s))
    # the terminator saw TLS sessions from every client (admin, producer, consumer)
    assert "accepting connection from" in (tls_broker.workdir / "terminator.log").read_text()


def test_records_round_trip_over_sasl_ssl(tls_broker: TlsKafka, pki: Pki) -> None:
    s = _settings(
        tls_broker,
        KATO_STREAM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KATO_STREAM_KAFKA_SASL_MECHANISM="PLAIN",
        KATO_STREAM_KAFKA_SASL_USERNAME="kato",
        KATO_STREAM_KAFKA_SASL_PASSWORD="kato-secret",
        KATO_STREAM_KAFKA_SSL_CAFILE=pki.ca,
    )
    asyncio.run(_round_trip(s))


def test_a_client_trusting_another_ca_fails_clearly(
    tls_broker: TlsKafka, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    s = _settings(
        tls_broker,
        KATO_STREAM_KAFKA_SECURITY_PROTOCOL="SSL",
        KATO_STREAM_KAFKA_SSL_CAFILE=pki.other_ca,
    )
    caplog.set_level(logging.ERROR, logger="aiokafka")
    t0 = time.monotonic()
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        asyncio.run(
            describe_partitions(s.kafka_bootstrap, ["x"], 20, kafka_options=client_options(s))
        )
    assert time.monotonic() - t0 < 15  # fails at once, no hang
    # aiokafka logs the cause: certificate verification, naming the broker
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    assert tls_broker.bootstrap in caplog.text


def test_a_plaintext_client_cannot_use_the_tls_port(tls_broker: TlsKafka) -> None:
    s = _settings(tls_broker)  # PLAINTEXT

    async def probe() -> None:
        await asyncio.wait_for(
            describe_partitions(s.kafka_bootstrap, ["x"], 5, kafka_options=client_options(s)), 15
        )

    with pytest.raises((KafkaConnectionError, TimeoutError)):
        asyncio.run(probe())


def test_mutual_tls(pki: Pki, netns: list[str]) -> None:
    """The terminator asks for a client certificate signed by the CA."""
    assert SOCAT is not None
    with tls_kafka(pki, netns, SOCAT, client_cert_required=True) as stack:
        mtls = _settings(
            stack,
            KATO_STREAM_KAFKA_SECURITY_PROTOCOL="SSL",
            KATO_STREAM_KAFKA_SSL_CAFILE=pki.ca,
            KATO_STREAM_KAFKA_SSL_CERTFILE=pki.client_cert,
            KATO_STREAM_KAFKA_SSL_KEYFILE=pki.client_key,
        )
        try:
            asyncio.run(wait_bootstrap(stack.bootstrap, client_options(mtls), 60))
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{stack.logs()}")
        asyncio.run(_round_trip(mtls))
        no_cert = dataclasses.replace(mtls, kafka_ssl_certfile="", kafka_ssl_keyfile="")
        with pytest.raises(KafkaConnectionError):
            asyncio.run(
                describe_partitions(
                    stack.bootstrap, ["x"], 10, kafka_options=client_options(no_cert)
                )
            )


def test_a_worker_answers_over_tls(tls_broker: TlsKafka, pki: Pki, tmp_path: Path) -> None:
    """``kato-stream worker`` with SSL settings: Faust's consumer, producer and topic admin,
    the LTM follower and the group watchdog all speak TLS to the broker."""
    from tests.stream.harness import WorkerProc

    uid = "tls" + uuid.uuid4().hex[:8]
    s = dataclasses.replace(
        _settings(
            tls_broker,
            KATO_STREAM_KAFKA_SECURITY_PROTOCOL="SSL",
            KATO_STREAM_KAFKA_SSL_CAFILE=pki.ca,
        ),
        topic_prefix=uid,
        app_id=f"kato-{uid}",
        partitions=2,
        data_dir=str(tmp_path / "data"),
        web_port=0,
        persist=False,  # no stores: this test is about Kafka
        session_lists="table",
    )
    opts = client_options(s)
    asyncio.run(create_topics(s.kafka_bootstrap, topic_specs(s), kafka_options=opts))
    worker = WorkerProc(s, tmp_path / "worker.log").start()
    try:
        lines = [_envelope("s-tls", i) for i in range(3)]
        asyncio.run(
            publish_lines(s.kafka_bootstrap, s.topic("observations"), lines, kafka_options=opts)
        )
        deadline = time.monotonic() + 120
        out: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(out) < 3:
            assert worker.alive(), worker.log_tail()
            recs = asyncio.run(
                consume_records(
                    s.kafka_bootstrap,
                    s.topic("predictions"),
                    timeout=3,
                    to_end=True,
                    kafka_options=opts,
                )  # fmt: skip
            )
            out = [codecs.loads(r.value) for r in recs]
        assert len(out) == 3, worker.log_tail()
        assert sorted(str(o["msg_id"]) for o in out) == ["m0", "m1", "m2"]
        assert {o["status"] for o in out} == {"ok"}
        assert max(int(str(o["stm_length"])) for o in out) == 3
    finally:
        worker.stop()
