"""``EmbeddedStack``: every external component of kato-stream on one machine, one call.

Kafka is noida-db (data in RAM, JSON snapshot every ~7 s under ``<data_dir>/noida``), Redis
is ``redis-server`` when installed (else noida-db's Redis endpoint), ClickHouse is chdb
(in-process, under ``<data_dir>/clickhouse``) and Qdrant is local mode (under
``<data_dir>/qdrant``): the last two need no process, only their directories, and are opened
by the stores themselves.  :meth:`EmbeddedStack.settings` points a :class:`Settings` at all
of it.  ``python -m kato_stream.embedded`` runs the stack in the foreground.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from urllib.parse import urlsplit

from kato_stream.embedded.broker import noida_process, wait_kafka
from kato_stream.embedded.ports import free_port, port_open
from kato_stream.embedded.process import ManagedProcess
from kato_stream.embedded.redis import redis_process, redis_server_binary, wait_redis
from kato_stream.redact import redact_url
from kato_stream.service import Service
from kato_stream.settings import Settings

log = logging.getLogger(__name__)


class EmbeddedStackError(RuntimeError):
    """The embedded stack could not start (the message carries the component's log tail)."""


class EmbeddedStack(Service):
    """Start/stop noida-db (+ redis-server) on given or free ports under ``data_dir``.

    ``kafka_port``/``redis_port`` 0 = a free port chosen at start (retried on a port race).
    ``use_redis_server`` None = use ``redis-server`` if it is on PATH.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        kafka_port: int = 0,
        redis_port: int = 0,
        host: str = "127.0.0.1",
        use_redis_server: bool | None = None,
        timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.timeout = timeout
        self._want_kafka, self._want_redis = kafka_port, redis_port
        binary = redis_server_binary()
        if use_redis_server and binary is None:
            raise EmbeddedStackError("redis-server is not installed")
        self._redis_binary = binary if use_redis_server in (None, True) else None
        self.kafka_port = kafka_port
        self.redis_port = redis_port
        self.processes: list[ManagedProcess] = []

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> EmbeddedStack:
        """A stack listening where ``settings`` tells clients to connect."""
        kafka = urlsplit("//" + settings.kafka_bootstrap.split(",")[0])
        redis = urlsplit(settings.redis_url)
        return cls(
            settings.data_dir,
            kafka_port=kafka.port or 9092,
            redis_port=redis.port or 6379,
            host=kafka.hostname or "127.0.0.1",
            **kwargs,  # type: ignore[arg-type]
        )

    # -- addresses ---------------------------------------------------------------------

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.host}:{self.redis_port}/0"

    @property
    def clickhouse_path(self) -> Path:
        """chdb data directory (one process at a time may open it)."""
        return self.data_dir / "clickhouse"

    @property
    def qdrant_path(self) -> Path:
        """Qdrant local-mode directory (one client at a time may open it)."""
        return self.data_dir / "qdrant"

    @property
    def redis_backend(self) -> str:
        return "redis-server" if self._redis_binary else "noida-db"

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` (default: from the environment) pointed at this stack.

        The embedded components listen on this host without TLS or credentials, so the
        Kafka security and store credential settings of ``base`` (meant for a production
        cluster) are reset: PLAINTEXT, no passwords, no TLS."""
        base = Settings.from_env() if base is None else base
        return dataclasses.replace(
            base,
            kafka_bootstrap=self.kafka_bootstrap,
            redis_url=self.redis_url,
            data_dir=str(self.data_dir),
            clickhouse_url="",
            qdrant_url="",
            kafka_security_protocol="PLAINTEXT",
            kafka_sasl_username="",
            kafka_sasl_password="",
            kafka_ssl_cafile="",
            kafka_ssl_certfile="",
            kafka_ssl_keyfile="",
            clickhouse_user="",
            clickhouse_password="",
            clickhouse_secure=False,
            redis_password="",
            redis_tls=False,
            redis_ssl_cafile="",
            qdrant_api_key="",
            qdrant_https=False,
        )

    def running(self) -> bool:
        return bool(self.processes) and all(p.running() for p in self.processes)

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        """Start every process and wait until Kafka answers metadata and Redis PINGs.

        Call from the thread that owns the event loop (children die with that thread).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.clickhouse_path.mkdir(exist_ok=True)
        self.qdrant_path.mkdir(exist_ok=True)
        auto = self._want_kafka == 0 or self._want_redis == 0
        attempts = 3 if auto else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._start_once()
                log.info(
                    "embedded stack up: kafka %s, redis %s (%s), data %s",
                    self.kafka_bootstrap, redact_url(self.redis_url), self.redis_backend,
                    self.data_dir,
                )  # fmt: skip
                return
            except EmbeddedStackError:
                await self.on_stop()
                if attempt == attempts:
                    raise
                log.warning("embedded stack start failed (attempt %d), retrying", attempt)

    async def _start_once(self) -> None:
        self.kafka_port = self._want_kafka or free_port(self.host)
        self.redis_port = self._want_redis or free_port(self.host)
        while self.redis_port == self.kafka_port:
            self.redis_port = free_port(self.host)
        for port in (self.kafka_port, self.redis_port):
            if port_open(self.host, port):
                raise EmbeddedStackError(f"port {self.host}:{port} is already in use")
        noida = noida_process(
            self.data_dir / "noida",
            self.kafka_port,
            None if self._redis_binary else self.redis_port,
            self.host,
        )
        self.processes = [noida]
        if self._redis_binary:
            self.processes.append(
                redis_process(
                    self._redis_binary, self.data_dir / "redis", self.redis_port, self.host
                )
            )
        for p in self.processes:
            p.start()
        redis_proc = self.processes[-1]
        try:
            await asyncio.gather(
                wait_kafka(self.kafka_bootstrap, self.timeout, noida),
                wait_redis(self.redis_url, self.timeout, redis_proc),
            )
        except (TimeoutError, RuntimeError) as exc:
            tails = "\n".join(f"--- {p.name} log ---\n{p.log_tail()}" for p in self.processes)
            raise EmbeddedStackError(f"embedded stack did not start: {exc}\n{tails}") from exc

    async def on_stop(self) -> None:
        """SIGTERM every process (then SIGKILL after 10 s); leaves no process behind."""
        procs, self.processes = self.processes, []
        if procs:
            await asyncio.gather(*(asyncio.to_thread(p.stop) for p in reversed(procs)))


async def run_forever(settings: Settings) -> None:
    """Run the stack where ``settings`` point until cancelled (Ctrl-C)."""
    async with EmbeddedStack.from_settings(settings) as stack:
        print(f"kafka      {stack.kafka_bootstrap}")
        print(f"redis      {redact_url(stack.redis_url)} ({stack.redis_backend})")
        print(f"clickhouse chdb://{stack.clickhouse_path}")
        print(f"qdrant     file://{stack.qdrant_path}")
        print("press Ctrl-C to stop", flush=True)
        await asyncio.Event().wait()
