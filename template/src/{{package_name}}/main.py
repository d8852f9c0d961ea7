"""The application factory.

Run it with `uvicorn <package>.main:create_app --factory`. Tests build their
own app with their own settings, so nothing here is created at import time.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from .api import api_router
from .api.failed_tasks import warn_if_disabled
from .jobs.queue import open_task_backend
from .logging import RequestIdMiddleware, configure_logging
from .resources import open_resources
from .settings import Settings


def create_app(
    settings: Settings | None = None, *, http_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the app. `settings` default to the environment's; `http_transport`
    replaces the network for outgoing HTTP calls (tests use local stubs)."""
    settings = settings or Settings()
    configure_logging(settings)
    warn_if_disabled(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with (
            open_resources(settings, http_transport=http_transport) as resources,
            open_task_backend(settings, resources) as task_backend,
        ):
            # Copied into every request's `request.state`.
            yield {"settings": settings, "resources": resources, **task_backend}

    # Starlette refuses a longer body with 413 as it streams in, before a route parses it.
    app = FastAPI(
        title=settings.app_name, lifespan=lifespan, max_body_size=settings.body_limit_bytes
    )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(api_router)
    return app
