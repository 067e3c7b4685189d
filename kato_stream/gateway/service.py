"""The gateway's services (Redis registry, stream client, pattern reader) with start/stop.

Services handed in from outside (a worker process sharing its connections) are used but
not stopped; the ones the gateway creates itself it also closes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from fastapi.responses import JSONResponse, Response
from redis.asyncio import Redis

from kato_stream import fetch_backoff
from kato_stream.gateway.client import (
    EnvelopeTooLarge,
    PayloadNotEncodable,
    StreamClient,
    StreamTimeout,
    StreamUnavailable,
    new_msg_id,
)
from kato_stream.gateway.errors import detail, from_rejection, too_large, validation_error
from kato_stream.gateway.sessions import SessionRegistry
from kato_stream.kafka import client_options
from kato_stream.service import Service
from kato_stream.settings import Settings
from kato_stream.stores.connect import redis_client
from kato_stream.stream.ltm import LtmRegistry, PatternFollower
from kato_stream.stream.persisted import PersistWaiter


class Reply(Exception):
    """Short-circuits a route with a ready HTTP response (an error body)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(eq=False)
class Gateway(Service):
    """Everything a request handler needs; one per gateway process."""

    settings: Settings
    redis: Redis | None = None
    stream: StreamClient | None = None
    ltm: LtmRegistry | None = None
    """Long-term memory for pattern reads; None = follow ``kato.patterns`` here (own copy)."""
    follower: PatternFollower | None = None
    """What fills ``ltm``: pattern reads wait for it to reach the topic's end (patterns.py)."""
    request_timeout: float = 30.0
    stm_info: Callable[[], dict[str, Any]] | None = None
    """Inside a worker: describes the worker's STM table (``GET /distributed-stm/stats``)."""
    started_at: float = field(default_factory=time.time)
    _owned: list[Any] = field(default_factory=list, init=False, repr=False)
    _sessions: SessionRegistry | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        Service.__init__(self)

    async def on_start(self) -> None:
        """Create and start whatever was not handed in (Redis, stream client, pattern follower)."""
        fetch_backoff.install_from(self.settings)
        if self.redis is None:
            self.redis = redis_client(self.settings)
            self._owned.append(self.redis)
        await self.redis.ping()
        if self.stream is None:
            self.stream = StreamClient(
                bootstrap=self.settings.kafka_bootstrap,
                input_topic=self.settings.topic("observations"),
                output_topic=self.settings.topic("predictions"),
                timeout=self.request_timeout,
                max_bytes=self.settings.max_message_bytes,
                max_output_bytes=self.settings.max_output_bytes,
                persisted=PersistWaiter(
                    self.redis, self.settings.app_id, self.settings.topic("patterns")
                )
                if self.settings.persist and self.settings.gateway_wait_persisted
                else None,
                persist_timeout=self.settings.store_timeout,
                kafka_options=client_options(self.settings),
            )
            await self.stream.start()
            self._owned.append(self.stream)
        if self.ltm is None:
            self.ltm = LtmRegistry()
            follower = PatternFollower(
                self.settings.kafka_bootstrap,
                self.settings.topic("patterns"),
                self.ltm,
                kafka_options=client_options(self.settings),
            )
            await follower.start()
            self._owned.append(follower)
            self.follower = follower
        self._sessions = SessionRegistry(self.redis, default_ttl=self.settings.session_ttl)
        self.started_at = time.time()

    async def on_stop(self) -> None:
        """Stop what this gateway created, newest first."""
        while self._owned:
            svc = self._owned.pop()
            if isinstance(svc, Redis):
                await svc.aclose()
            else:
                await svc.stop()

    @property
    def sessions(self) -> SessionRegistry:
        if self._sessions is None:
            raise RuntimeError("gateway not started")
        return self._sessions

    @property
    def uptime(self) -> float:
        return time.time() - self.started_at

    async def command(
        self,
        op: str,
        session_id: str,
        node_id: str,
        payload: dict[str, Any] | None = None,
        *,
        msg_id: str | None = None,
    ) -> dict[str, Any]:
        """Run one command through the stream; its KATO response body, or ``Reply`` with the error."""
        if self.stream is None:
            raise Reply(detail(503, "Stream processor unavailable"))
        try:
            record = await self.stream.request(
                op, session_id, node_id, payload, msg_id=msg_id or new_msg_id(op)
            )
        except EnvelopeTooLarge as exc:
            raise Reply(too_large(str(exc))) from None
        except MessageSizeTooLargeError:  # the broker's limit is below the worker's
            raise Reply(too_large(f"The {op} command is too large for the broker")) from None
        except PayloadNotEncodable as exc:
            raise Reply(not_encodable(str(exc))) from None
        except StreamTimeout:
            raise Reply(detail(504, "Timed out waiting for the stream processor")) from None
        except StreamUnavailable:
            raise Reply(detail(503, "Stream processor unavailable")) from None
        status = record.get("status")
        if status == "truncated":
            return truncated_response(op, record)
        if status != "ok":
            raise Reply(from_rejection(record.get("error"), session_id))
        response = record.get("response")
        return response if isinstance(response, dict) else {}


def not_encodable(reason: str) -> JSONResponse:
    """422 in FastAPI's shape for a body value JSON cannot carry to the worker."""
    return validation_error(
        [
            {
                "type": "value_error",
                "loc": ["body"],
                "msg": f"Value error, cannot be sent to the stream processor: {reason}",
                "input": None,
                "ctx": {"error": reason},
            }
        ]
    )


def _observe_response(record: dict[str, Any]) -> dict[str, Any]:
    learned = record.get("learned_patterns") or []
    return {
        "status": "okay",
        "session_id": record.get("session_id"),
        "processor_id": record.get("node_id"),
        "stm_length": record.get("stm_length"),
        "time": record.get("time"),
        "unique_id": record.get("msg_id"),
        "auto_learned_pattern": learned[-1] if learned else None,
    }


def _configure_response(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "okay",
        "message": "Configuration updated",
        "session_id": record.get("session_id"),
    }


#: Ops whose answer the gateway can rebuild from a truncated record (the worker drops the
#: response with the predictions that made the record too large; the command was applied):
#: an observe's answer is all in the record, a configure's is fixed.
REBUILT = {"observe": _observe_response, "configure": _configure_response}
#: Ops that change nothing: a truncated answer to them is only a too-large answer.
READ_ONLY = frozenset({"get", "predict"})


def truncated_response(op: str, record: dict[str, Any]) -> dict[str, Any]:
    """The answer to a command whose output record the worker had to shrink (status
    ``truncated``, ``OUTPUT_TOO_LARGE``): rebuilt where the record still holds all of it,
    else ``Reply`` 413 (saying, for a write, that the command was applied)."""
    rebuild = REBUILT.get(op)
    if rebuild is not None:
        return rebuild(record)
    err = record.get("error") or {}
    info = err.get("details")
    size, limit = (info.get("size"), info.get("limit")) if isinstance(info, dict) else (0, 0)
    what = f" ({size} bytes, limit {limit})" if size and limit else ""
    message = f"The answer to {op} is too large to return{what}"
    if op not in READ_ONLY:
        message += "; the command was applied"
    raise Reply(too_large(message))


def json_reply(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(status_code=status, content=body)
