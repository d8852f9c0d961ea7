"""The dead letter: the jobs that failed for good, listed and run again.

A failed job keeps its arguments and the id of the request that scheduled it, so it
can run again as it was scheduled, under the same job id. `reset_for_rerun` puts it
back to pending: its tries start again from 0 (the task gets all of them once more);
its error stays readable until the new run ends (a new failure replaces it, a success
clears it); its interruptions stay, as history. The new run's
log lines carry the original request id. The admin routes (`api/failed_tasks.py`) and
the command line (`failed list`, `failed retry`) both go through here.
"""

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from pydantic import BaseModel, field_validator
from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.typing import FilteringBoundLogger

from ..models import Job, as_utc
from .records import CHUNK

ClearFinished = Callable[[Sequence[str]], Awaitable[None]]
"""Makes the backend forget the finished runs of the jobs with these ids, before they run
again: arq keeps a finished job's result for `keep_result` seconds, and refuses its id
meanwhile. `jobs/queue.py` gives one; it raises `QueueUnavailableError`."""


class QueueUnavailableError(Exception):
    """The task backend did not answer; nothing was changed."""


class FailedJob(BaseModel):
    """A job that failed for good, as the dead letter lists it."""

    id: str
    task: str
    request_id: str | None
    """The request that scheduled the job; a re-run's log lines carry it too."""
    tries: int
    """Tries that ran to an end before the job failed."""
    interruptions: int
    """Runs cut short by a crash or a shutdown; they did not count as tries."""
    error: str | None
    """The last try's error, e.g. `TimeoutError: ...`."""
    created_at: datetime
    finished_at: datetime | None
    """When it failed."""

    @field_validator("created_at", "finished_at")
    @classmethod
    def in_utc(cls, moment: datetime | None) -> datetime | None:
        return as_utc(moment) if moment is not None else None


@dataclass(frozen=True)
class Page:
    """Failed jobs, the latest failure first, and where the next page starts."""

    jobs: list[Job]
    next_cursor: str | None
    """Pass it back for the next page; None on the last page."""


async def list_failed(
    session: AsyncSession, *, task: str | None = None, limit: int = 50, cursor: str | None = None
) -> Page:
    """The failed jobs, the latest failure first, `limit` of them at most. `task`: only the
    jobs of the task of that name; `cursor`: the `next_cursor` of the page before (a
    ValueError when it is not one).

    A cursor, not an offset: jobs failing, or re-run, while a client pages through the list
    do not make it see a job twice or skip one.
    """
    query = select(Job).where(Job.status == "failed")
    if task is not None:
        query = query.where(Job.task == task)
    if cursor is not None:
        query = query.where(tuple_(Job.finished_at, Job.id) < tuple_(*parse_cursor(cursor)))
    query = query.order_by(Job.finished_at.desc(), Job.id.desc()).limit(limit + 1)
    jobs = list((await session.scalars(query)).all())
    if len(jobs) <= limit:
        return Page(jobs, None)
    return Page(jobs[:limit], cursor_after(jobs[limit - 1]))


def cursor_after(job: Job) -> str:
    """The cursor of the page that starts after `job`."""
    return cursor_of(job.finished_at or job.created_at, job.id)


def cursor_of(moment: datetime, job_id: str) -> str:
    """A cursor for a list ordered by a time, then the id: where it stopped."""
    return base64.urlsafe_b64encode(f"{as_utc(moment).isoformat()} {job_id}".encode()).decode()


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    """The time and the id a cursor holds; a ValueError for a string that no page gave
    out."""
    try:
        text = base64.b64decode(cursor, altchars=b"-_", validate=True).decode()
        finished_at, job_id = text.split(" ")
        moment = datetime.fromisoformat(finished_at)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor: pass the next_cursor of the page before") from None
    if moment.tzinfo is None:
        raise ValueError("not a cursor: pass the next_cursor of the page before")
    return moment, job_id


def why_not_retryable(job: Job) -> str | None:
    """Why `job` cannot run again, in a sentence; None when it can."""
    if job.status != "failed":
        return f"Job {job.id} is {job.status}, not failed: only a failed job can run again."
    if job.arguments is None:
        return (
            f"Job {job.id} failed before jobs kept their arguments, so it cannot run again; "
            "schedule its task anew."
        )
    return None


async def retryable_jobs_of(session: AsyncSession, task: str) -> tuple[list[str], int]:
    """The ids of the failed jobs of `task` that can run again, the oldest failure first,
    and how many others cannot (failed before jobs kept their arguments)."""
    rows = (
        await session.execute(
            select(Job.id, Job.arguments)
            .where(Job.status == "failed", Job.task == task)
            .order_by(Job.finished_at, Job.id)
        )
    ).all()
    ids = [row.id for row in rows if row.arguments is not None]
    return ids, len(rows) - len(ids)


async def reset_for_rerun(
    session: AsyncSession,
    job_ids: Sequence[str],
    *,
    clear_finished: ClearFinished,
    due_at: datetime,
) -> list[Job]:
    """Put the failed jobs `job_ids` back to pending, due at `due_at`, their tries reset;
    return those reset. The caller commits, then dispatches them.

    The backend forgets their finished runs first (`clear_finished`): when it does not
    answer, `QueueUnavailableError` is raised and no job is reset. A job no longer failed
    (another caller re-ran it meanwhile) is left as it is.
    """
    log: FilteringBoundLogger = structlog.get_logger()
    reset: list[Job] = []
    for start in range(0, len(job_ids), CHUNK):
        chunk = job_ids[start : start + CHUNK]
        await clear_finished(chunk)
        jobs = await session.scalars(
            update(Job)
            .where(Job.id.in_(chunk), Job.status == "failed")
            .values(status="pending", tries=0, due_at=due_at, finished_at=None, lease_until=None)
            .returning(Job)
        )
        reset += jobs.all()
    for job in reset:
        log.info(
            "job_rerun_scheduled",
            task=job.task,
            job_id=job.id,
            request_id=job.request_id,
            last_error=job.error,
        )
    return reset
