"""Structured logging: one configuration, a request id on every line.

`RequestIdMiddleware` gives each request an id (the caller's `X-Request-ID`
when it sends a usable one) and returns it in the response. `get_logger`
hands routes a logger bound to that id, and the task queue passes the id on
to every task the request schedules, so `grep <id>` shows the request and
all the work it caused.
"""

import logging
import re
import sys
import time
import uuid

import structlog
from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.typing import FilteringBoundLogger

from .settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
_USABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def configure_logging(settings: Settings) -> None:
    """Send structlog output to stdout: one JSON object per line, or console lines."""
    processors: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if settings.log_format == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer()]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Its DEBUG lines print every SQL statement with its values, a job's arguments included.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)


def new_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI middleware: sets `request.state.request_id` and logs each request.

    Written without `BaseHTTPMiddleware`, which runs the endpoint in a separate
    task and has a history of breaking background-task timing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"")
        candidate = incoming.decode("latin-1")
        request_id = candidate if _USABLE_REQUEST_ID.fullmatch(candidate) else new_id()
        scope.setdefault("state", {})["request_id"] = request_id

        log: FilteringBoundLogger = structlog.get_logger()
        log = log.bind(request_id=request_id, method=scope["method"], path=scope["path"])
        started = time.perf_counter()
        status = 0

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                # Logged when the response is complete, before any background task runs.
                duration_ms = round((time.perf_counter() - started) * 1000, 2)
                log.info("request_finished", status=status, duration_ms=duration_ms)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            log.exception("request_failed")
            if status:  # the response has started: nothing left to answer with
                raise
            # Answered here rather than by Starlette's outer error middleware, whose
            # 500 would leave without the id and without a request_finished line.
            body = b"Internal Server Error"
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send_with_request_id(
                {"type": "http.response.start", "status": 500, "headers": headers}
            )
            await send_with_request_id({"type": "http.response.body", "body": body})


def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


async def get_logger(request: Request) -> FilteringBoundLogger:
    """A logger bound to the request's id and route, for use in a route."""
    route = request.scope.get("route")
    log: FilteringBoundLogger = structlog.get_logger()
    return log.bind(
        request_id=get_request_id(request),
        route=getattr(route, "path", request.url.path),
    )
