"""GET /health: whether the app and what it depends on are up."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text
from structlog.typing import FilteringBoundLogger

from ..deps import LoggerDep, ResourcesDep
from ..resources import Resources
from ..tasks.queue import check_task_backend

router = APIRouter(tags=["health"])


@router.get("/health", responses={503: {"description": "A dependency is down"}})
async def health(
    resources: ResourcesDep,
    log: LoggerDep,
    task_backend: Annotated[dict[str, bool], Depends(check_task_backend)],
) -> JSONResponse:
    checks = {"database": await database_is_up(resources, log), **task_backend}
    healthy = all(checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


async def database_is_up(resources: Resources, log: FilteringBoundLogger) -> bool:
    try:
        async with resources.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:
        log.exception("database_check_failed")
        return False
    return True
