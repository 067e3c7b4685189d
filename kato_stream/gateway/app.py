"""The FastAPI application: KATO's REST API over kato-stream.

``create_app(gateway)`` wires routes, the session middleware, the request body limit,
request metrics and the error handlers.  The app's lifespan starts and stops the
:class:`Gateway` services, so ``uvicorn kato_stream.gateway.app:app`` (settings from the
environment) just works, and a worker process can hand in its own connections instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response

from kato_stream import metrics
from kato_stream.gateway import (
    routes_diagnostics,
    routes_hierarchy,
    routes_sessions,
    routes_system,
)
from kato_stream.gateway.errors import internal_error, validation_error
from kato_stream.gateway.events import EventHub
from kato_stream.gateway.middleware import BodyLimitMiddleware, SessionMiddleware
from kato_stream.gateway.service import Gateway, Reply
from kato_stream.gateway.stats import GatewayStats
from kato_stream.gateway.timeseries import MetricHistory
from kato_stream.settings import Settings


def create_app(gateway: Gateway | None = None) -> FastAPI:
    """The gateway app; ``gateway`` defaults to one built from the environment."""
    gw = gateway or Gateway(Settings.from_env())
    stats = GatewayStats()
    events = EventHub()
    history = MetricHistory(
        stats,
        data_dir=gw.settings.data_dir,
        active_sessions=lambda: gw.sessions.count(),
        websocket_clients=lambda: events.clients,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        await history.start()
        try:
            yield
        finally:
            await history.stop()
            await gw.stop()

    app = FastAPI(title="KATO API (kato-stream gateway)", version="3.10.1", lifespan=lifespan)
    app.state.gateway = gw
    app.state.stats = stats
    app.state.events = events
    app.state.history = history

    @app.exception_handler(Reply)
    async def _reply(_: Request, exc: Reply) -> Response:
        return exc.response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        # FastAPI's own body, except that a NaN or Infinity the client sent (Python's JSON
        # parser accepts them) is echoed as null instead of failing to encode (a 500).
        return validation_error(jsonable_encoder(exc.errors()))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        return internal_error()

    app.include_router(routes_sessions.router)
    app.include_router(routes_hierarchy.router)  # before /pattern/{pattern_id}
    app.include_router(routes_system.router)
    app.include_router(routes_diagnostics.router)
    app.add_middleware(BodyLimitMiddleware, limit=lambda: gw.settings.max_message_bytes)
    app.add_middleware(
        SessionMiddleware,
        registry=lambda: gw.sessions,
        on_request=stats.record,
        on_start=stats.start,
    )
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]
    )
    app.add_middleware(metrics.MetricsMiddleware)
    return app


def __getattr__(name: str) -> FastAPI:
    """``kato_stream.gateway.app:app`` for uvicorn, built lazily from the environment."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
