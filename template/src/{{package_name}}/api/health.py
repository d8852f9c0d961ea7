"""Health: `GET /health/live` (the process answers) and `GET /health/ready` (what it
depends on is up).

Liveness checks nothing else, so an orchestrator restarts the process only when the
process itself is stuck, never because the database or Redis is down: a restart
would not bring them back. Readiness names each dependency, so a load balancer (or a
person) sees what is down and sends no traffic until it is back.
"""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text
from structlog.typing import FilteringBoundLogger

from ..deps import LoggerDep, ResourcesDep
from ..jobs.queue import check_task_backend
from ..resources import Resources

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers; no dependency is checked."""
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"description": "A dependency is down"}})
async def ready(
    resources: ResourcesDep,
    log: LoggerDep,
    task_backend: Annotated[dict[str, bool], Depends(check_task_backend)],
) -> JSONResponse:
    """200 when every dependency is up; 503 otherwise, with `checks` naming each one."""
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
