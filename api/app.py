"""The FastAPI application: :func:`create_app` wraps a :class:`~odpm.service.Service`.

The app's lifespan starts the service (workers, forwarder) and stops it
(workers, transports, forwarder, journal) when uvicorn shuts down, so SIGINT and
SIGTERM handled by uvicorn end acquisition cleanly.  Live streams are closed
first, otherwise a connected SSE client would hold the shutdown open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client import Histogram as _Histogram
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.console import mount_console
from api.deps import MetricsAccess
from api.guard import RequestGuard
from api.openapi import install_openapi
from api.routes import (
    alarms,
    control,
    devices,
    health,
    history,
    instrument,
    named_errors,
    openconfig,
    readings,
    references,
    storage,
    stream,
    thresholds,
    traces,
)
from api.routes.summary_stream import router as summary_stream_router
from odpm import __version__
from odpm.metrics import ServiceMetrics
from odpm.service import Service, ServiceError, UnknownDeviceError
from odpm.storage.history import HistoryBackendError

log = logging.getLogger(__name__)

#: What FastAPI says when a request body cannot be decoded at all (fastapi.routing).
_BODY_PARSE_ERROR = "There was an error parsing the body"

API_PREFIX = "/api/v1"
#: How often the InfluxDB ping behind /health runs (the answer is cached).
INFLUX_PING_INTERVAL_S = 5.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


#: Methods recorded under their own name in the latency metric; any other is ``other``
#: (a client choosing the method must not choose the number of series).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "other"


class RequestLatency:
    """Pure ASGI middleware recording latency per route *template* (bounded labels).

    Labels come from a closed set: the known methods (others are ``other``),
    the templates of the app's routes (no match is ``unmatched``, never the raw
    path) and the status codes the app answers with.
    """

    def __init__(self, app: ASGIApp, histogram: _Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500

        async def send_status(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            # Routes of included routers keep their own path; put the prefix back.
            if (
                route is not None
                and scope["path"].startswith(API_PREFIX)
                and not template.startswith(API_PREFIX)
            ):
                template = API_PREFIX + template
            self.histogram.labels(method_label(scope["method"]), template, str(code)).observe(
                time.perf_counter() - started
            )


async def _ping_influx(service: Service) -> None:
    """Keep ``service.influx_reachable`` current so /health never waits on InfluxDB."""
    url = service.settings.storage.influx.url + "/ping"
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            try:
                r = await client.get(url)
                service.influx_reachable = r.status_code < 500
            except httpx.HTTPError:
                service.influx_reachable = False
            await asyncio.sleep(INFLUX_PING_INTERVAL_S)


def create_app(service: Service, *, manage_service: bool = True) -> FastAPI:
    """The HTTP API over ``service``.

    With ``manage_service`` the app's lifespan starts and stops the service;
    without, the caller does (a test or benchmark sharing one service).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        service.broadcaster.bind(loop)
        if manage_service:
            await asyncio.to_thread(service.start)
        pinger = (
            asyncio.create_task(_ping_influx(service))
            if service.settings.storage.influx.enabled
            else None
        )
        try:
            yield
        finally:
            service.broadcaster.close()
            if pinger is not None:
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
            if manage_service:
                await asyncio.to_thread(service.stop)

    app = FastAPI(
        title="odpm",
        version=__version__,
        description="Acquisition service for ODPM-96 optical channel performance monitors: "
        "devices, latest readings and traces, history, alarms, live streams, control.",
        lifespan=lifespan,
        # Served from local files by api.console (FastAPI's own pages use a CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    metrics = ServiceMetrics(service)
    app.state.metrics = metrics

    v1 = APIRouter(prefix=API_PREFIX)
    routers = (
        health,
        devices,
        readings,
        openconfig,
        instrument,
        history,
        alarms,
        stream,
        control,
        storage,
        thresholds,
    )
    for module in routers:
        v1.include_router(module.router)
    v1.include_router(traces.router)
    v1.include_router(traces.write_router)
    v1.include_router(references.router)
    v1.include_router(references.write_router)
    v1.include_router(summary_stream_router)  # GET /stream: all devices, for the console
    app.include_router(v1)
    mount_console(app)

    @app.get("/metrics", include_in_schema=False, dependencies=[MetricsAccess])
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = jsonable_encoder(named_errors(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers a body it cannot decode at all (not UTF-8) with a bare 400
        # that no route documents; it is the same client error as malformed JSON: 422.
        if exc.status_code == 400 and exc.detail == _BODY_PARSE_ERROR:
            detail = [
                {
                    "type": "json_invalid",
                    "loc": ["body"],
                    "msg": "body: not JSON text (it must be UTF-8 encoded JSON)",
                }
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(UnknownDeviceError)
    async def unknown_device(request: Request, exc: UnknownDeviceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_404_NOT_FOUND)

    @app.exception_handler(HistoryBackendError)
    async def storage_unreachable(request: Request, exc: HistoryBackendError) -> JSONResponse:
        # InfluxDB down or refusing: the client may retry later; nothing is wrong with it.
        return JSONResponse(
            {"detail": f"storage unavailable: {exc}"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(sqlite3.DatabaseError)
    async def journal_unreadable(request: Request, exc: sqlite3.DatabaseError) -> JSONResponse:
        # A damaged journal (health reports it and says to restart): one line, no traceback.
        log.warning("journal read failed on %s: %s", request.url.path, exc)
        return JSONResponse(
            {"detail": f"journal unreadable ({exc}); see /api/v1/health"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault; logged with its traceback, answered
        # without one.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": f"internal error ({type(exc).__name__}); see the service log"},
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    app.add_middleware(RequestGuard, routes=app.router.routes, api=lambda: service.settings.api)
    app.add_middleware(RequestLatency, histogram=metrics.request_latency)
    install_openapi(app, lambda: service.settings.api)
    return app
