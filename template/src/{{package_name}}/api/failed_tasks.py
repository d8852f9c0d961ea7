"""The dead letter, for operators: the jobs that failed for good, and their re-runs.

GET /tasks/failed lists them; POST /tasks/failed/{job_id}/retry runs one again, and
POST /tasks/failed/retry?task=NAME every one of a task. A re-run keeps its job id and
the request id of the request that first scheduled it (see `jobs/dead_letter.py`).

The routes need the `admin_token` setting, sent as `Authorization: Bearer <token>`.
Without the setting they answer 404, as if they did not exist, and the app says why
in its log when it starts (`dead_letter_disabled`).
"""

import secrets
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.typing import FilteringBoundLogger

from ..deps import SessionDep, SettingsDep
from ..jobs.dead_letter import (
    ClearFinished,
    FailedJob,
    QueueUnavailableError,
    list_failed,
    reset_for_rerun,
    retryable_jobs_of,
    why_not_retryable,
)
from ..jobs.outbox import Dispatch
from ..jobs.queue import get_clear_finished, get_dispatch
from ..models import Job, utcnow
from ..settings import Settings
from .jobs import JobOut

ADMIN_TOKEN_VARIABLE = f"{Settings.model_config.get('env_prefix', '')}ADMIN_TOKEN"

bearer = HTTPBearer(auto_error=False, description=f"The `{ADMIN_TOKEN_VARIABLE}` setting.")


async def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Let a request carrying the admin token through; answer 404 when no token is set."""
    token = settings.admin_token
    if token is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "This route needs the admin token: Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Compared in constant time, as bytes: compare_digest refuses non-ASCII strings.
    if not secrets.compare_digest(
        credentials.credentials.encode(), token.get_secret_value().encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "The admin token is wrong.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


def warn_if_disabled(settings: Settings) -> None:
    """Say once, when the app starts, why the dead letter's routes answer 404."""
    if settings.admin_token is None:
        log: FilteringBoundLogger = structlog.get_logger()
        log.warning(
            "dead_letter_disabled",
            reason=f"set {ADMIN_TOKEN_VARIABLE} to list and re-run failed tasks over HTTP",
        )


router = APIRouter(
    tags=["dead letter"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"description": "The admin token is missing or wrong"},
        404: {"description": "No such job, or no admin token is set (the routes are off)"},
    },
)

ClearFinishedDep = Annotated[ClearFinished, Depends(get_clear_finished)]
DispatchDep = Annotated[Dispatch, Depends(get_dispatch)]

QUEUE_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"description": "The task queue did not answer; nothing was changed"}
}


class FailedJobs(BaseModel):
    jobs: list[FailedJob]
    """The latest failure first."""
    next_cursor: str | None
    """Pass it as `cursor` for the next page; null on the last page."""


class FailedJobDetail(FailedJob):
    traceback: str | None
    """Where the last try failed."""


class Retried(BaseModel):
    task: str
    retried: int
    """Failed jobs of the task put back to pending and dispatched."""
    skipped: int
    """Failed jobs of the task that cannot run again: they failed before jobs kept their
    arguments."""


@router.get("/tasks/failed")
async def list_failed_jobs(
    session: SessionDep,
    task: Annotated[str | None, Query(max_length=200, description="Only this task's jobs")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=500,
            pattern=r"^[A-Za-z0-9_-]+={0,2}$",
            description="The `next_cursor` of the page before (opaque; 422 for any other)",
        ),
    ] = None,
) -> FailedJobs:
    """The jobs that failed for good, the latest failure first, a page at a time."""
    try:
        page = await list_failed(session, task=task, limit=limit, cursor=cursor)
    except ValueError as problem:
        error = {"type": "value_error", "loc": ("query", "cursor"), "msg": str(problem)}
        raise RequestValidationError([error | {"input": cursor}]) from None
    jobs = [FailedJob.model_validate(job, from_attributes=True) for job in page.jobs]
    return FailedJobs(jobs=jobs, next_cursor=page.next_cursor)


# Declared before the routes of `/tasks/failed/{job_id}`, which `retry` would match too:
# a method a route lacks is answered by the first route whose path matches (405, Allow).
@router.post(
    "/tasks/failed/retry", status_code=status.HTTP_202_ACCEPTED, responses=QUEUE_UNAVAILABLE
)
async def retry_failed_jobs_of_task(
    task: Annotated[str, Query(min_length=1, max_length=200)],
    session: SessionDep,
    clear_finished: ClearFinishedDep,
    dispatch: DispatchDep,
) -> Retried:
    """Run every failed job of a task again."""
    job_ids, skipped = await retryable_jobs_of(session, task)
    reset = await rerun(session, job_ids, clear_finished, dispatch)
    return Retried(task=task, retried=len(reset), skipped=skipped)


@router.get("/tasks/failed/{job_id}")
async def get_failed_job(job_id: str, session: SessionDep) -> FailedJobDetail:
    """A failed job, with the traceback of its last try."""
    job = await session.get(Job, job_id)
    if job is None or job.status != "failed":
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No failed job {job_id}.")
    return FailedJobDetail.model_validate(job, from_attributes=True)


@router.post(
    "/tasks/failed/{job_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        409: {"description": "The job did not fail, or cannot run again"},
        **QUEUE_UNAVAILABLE,
    },
)
async def retry_failed_job(
    job_id: str, session: SessionDep, clear_finished: ClearFinishedDep, dispatch: DispatchDep
) -> JobOut:
    """Run a failed job again, with all of its task's tries, under the same job id."""
    job = await rerun_failed_job(session, job_id, clear_finished, dispatch)
    return JobOut.model_validate(job, from_attributes=True)


async def rerun_failed_job(
    session: AsyncSession, job_id: str, clear_finished: ClearFinished, dispatch: Dispatch
) -> Job:
    """Reset the failed job `job_id`, commit, dispatch it; the job as reset. 404 for no
    such job, 409 for one that cannot run again (the dashboard's re-run too)."""
    job = await session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}.")
    problem = why_not_retryable(job)
    if problem:
        raise HTTPException(status.HTTP_409_CONFLICT, problem)
    reset = await rerun(session, [job.id], clear_finished, dispatch)
    if not reset:  # another caller re-ran it between our read and our write
        await session.refresh(job)
        raise HTTPException(status.HTTP_409_CONFLICT, why_not_retryable(job))
    return reset[0]


async def rerun(
    session: AsyncSession, job_ids: list[str], clear_finished: ClearFinished, dispatch: Dispatch
) -> list[Job]:
    """Reset the failed jobs `job_ids`, commit, and dispatch them as a request's jobs are."""
    try:
        reset = await reset_for_rerun(
            session, job_ids, clear_finished=clear_finished, due_at=utcnow()
        )
    except QueueUnavailableError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "The task queue did not answer; nothing was changed. Try again shortly.",
            headers={"Retry-After": "5"},
        ) from None
    await session.commit()
    if reset:
        await dispatch(reset)
    return reset
