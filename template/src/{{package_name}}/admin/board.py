"""What the dashboard reads: the `jobs` table, and nothing else (not the queue).

`overview` answers "is the work getting done?": jobs by task and status, how long the
oldest job owed has waited, the runs and failures of the last hour. `list_jobs` pages
through the jobs, newest first, by cursor (the dead letter's: jobs written while
an operator pages never make a page repeat or skip one).
"""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from ..jobs.dead_letter import cursor_of, parse_cursor
from ..metrics import count_jobs, oldest_due_seconds
from ..models import JOB_STATUSES, Job, utcnow

PAGE = 50


@dataclass(frozen=True)
class Overview:
    by_task: dict[str, dict[str, int]]
    """Jobs by task, then by status."""
    oldest_due_seconds: float | None
    """How long the pending job due longest ago has been due; None when none is."""
    last_hour: dict[str, int]
    """Jobs that ended in the last hour, by how: succeeded, failed, cancelled."""

    @property
    def totals(self) -> dict[str, int]:
        """Jobs by status, all tasks."""
        return totals_of(self.by_task)


def totals_of(by_task: dict[str, dict[str, int]]) -> dict[str, int]:
    return {
        status: sum(counts.get(status, 0) for counts in by_task.values()) for status in JOB_STATUSES
    }


async def jobs_by_task(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Jobs by task, then by status, the tasks in name order (what /metrics counts too)."""
    by_task: dict[str, dict[str, int]] = {}
    for (task, status), count in sorted((await count_jobs(session)).items()):
        by_task.setdefault(task, {})[status] = count
    return by_task


async def overview(session: AsyncSession) -> Overview:
    since = utcnow() - timedelta(hours=1)
    # One count per end, each down the (status, finished_at) index.
    last_hour = {
        status: await session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.status == status, Job.finished_at >= since)
        )
        or 0
        for status in ("succeeded", "failed", "cancelled")
    }
    return Overview(await jobs_by_task(session), await oldest_due_seconds(session), last_hour)


@dataclass(frozen=True)
class Filters:
    status: str | None = None
    task: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


async def list_jobs(session: AsyncSession, filters: Filters, cursor: str | None) -> Page:
    """A page of the jobs that pass `filters`, the newest first; `cursor`: the page
    before's `next_cursor` (a ValueError for any other string)."""
    query = select(Job)
    if filters.status is not None:
        query = query.where(Job.status == filters.status)
    if filters.task is not None:
        query = query.where(Job.task == filters.task)
    if filters.request_id is not None:
        query = query.where(Job.request_id == filters.request_id)
    if cursor is not None:
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(*parse_cursor(cursor)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(PAGE + 1)
    jobs = list((await session.scalars(query)).all())
    if len(jobs) <= PAGE:
        return Page(jobs, None)
    last = jobs[PAGE - 1]
    return Page(jobs[:PAGE], cursor_of(last.created_at, last.id))


def trace_id_of(job: Job) -> str | None:
    """The trace id of the span that scheduled `job`, from its `traceparent`."""
    traceparent = (job.trace_context or {}).get("traceparent")
    if not isinstance(traceparent, str):
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 else None
