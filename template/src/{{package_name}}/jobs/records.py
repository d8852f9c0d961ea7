"""Running a job from its row, and writing down how each run ended.

Both backends run jobs through `run_job`: it claims the row (so one runner at a
time runs it), runs one try of the task, and records the outcome. A row ends in
one of two states, `succeeded` or `failed` (with the error, the traceback and the
number of tries); a try to be retried, or a run cut short by a shutdown, puts it
back to `pending`. A run that finds its row still `running` after the lease ran
out follows a crash: it counts as an interruption, not as one of the task's tries.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import structlog
from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.typing import FilteringBoundLogger

from ..models import Job, utcnow
from ..resources import Resources
from ..settings import Settings
from .outbox import new_job
from .runtime import Outcome, Task, make_context, run_task, timeout_of

LEASE_MARGIN_SECONDS = 5.0
"""How long past a try's timeout its runner is presumed dead."""


@dataclass(frozen=True)
class Claim:
    """A job row its runner now holds."""

    args: list[Any]
    kwargs: dict[str, Any]
    request_id: str | None
    attempt: int
    """The try this run is, 1 for the first: the task's own tries, not the interruptions."""
    interruptions: int


async def run_job(
    task: Task[Any], job_id: str, *, settings: Settings, resources: Resources
) -> Outcome | None:
    """Run the next try of job `job_id` and record its outcome; None when the job is not
    this runner's to run (finished, running elsewhere, or never committed)."""
    # The row's writes are shielded from a shutdown: one cut off midway would leave the
    # row in a state nobody recorded, and its connection to the garbage collector.
    with anyio.CancelScope(shield=True):
        claim = await claim_job(resources.sessions, job_id, lease=timeout_of(task, settings))
    if claim is None:
        await explain_skip(resources.sessions, task, job_id)
        return None
    ctx = make_context(
        task,
        settings=settings,
        resources=resources,
        job_id=job_id,
        request_id=claim.request_id,
        attempt=claim.attempt,
    )
    if claim.interruptions:
        ctx.log.warning("job_resumed_after_interruption", interruptions=claim.interruptions)
    try:
        outcome = await run_task(task, ctx, claim.args, claim.kwargs)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await release_job(resources.sessions, job_id, ctx.log)
        raise
    with anyio.CancelScope(shield=True):
        await record_outcome(resources.sessions, job_id, outcome, ctx.log)
    return outcome


async def claim_job(
    sessions: async_sessionmaker[AsyncSession], job_id: str, *, lease: float
) -> Claim | None:
    """Mark the job running for `lease` seconds (plus a margin) if it is pending, or if
    its last runner's lease ran out; None if neither."""
    now = utcnow()
    async with sessions.begin() as session:
        row = (
            await session.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    or_(
                        Job.status == "pending",
                        and_(Job.status == "running", Job.lease_until < now),
                    ),
                )
                .values(
                    status="running",
                    started_at=now,
                    lease_until=now + timedelta(seconds=lease + LEASE_MARGIN_SECONDS),
                    interruptions=Job.interruptions + case((Job.status == "running", 1), else_=0),
                )
                .returning(Job.arguments, Job.request_id, Job.tries, Job.interruptions)
            )
        ).one_or_none()
    if row is None:
        return None
    arguments = row.arguments or {}
    return Claim(
        args=list(arguments.get("args", [])),
        kwargs=dict(arguments.get("kwargs", {})),
        request_id=row.request_id,
        attempt=row.tries + 1,
        interruptions=row.interruptions,
    )


async def explain_skip(
    sessions: async_sessionmaker[AsyncSession], task: Task[Any], job_id: str
) -> None:
    """Log why a job was not run: it may be a sign of a route that never committed."""
    log: FilteringBoundLogger = structlog.get_logger()
    async with sessions() as session:
        status = await session.scalar(select(Job.status).where(Job.id == job_id))
    if status is None:
        log.warning(
            "job_not_found",
            task=task.name,
            job_id=job_id,
            hint="its request rolled back, or the row was deleted",
        )
    else:
        log.info("job_skipped", task=task.name, job_id=job_id, status=status)


async def record_outcome(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    outcome: Outcome,
    log: FilteringBoundLogger,
) -> None:
    """Write how the try ended; a final failure is logged as `task_failed_permanently`."""
    now = utcnow()
    values: dict[str, Any] = {
        "tries": Job.tries + 1,
        "lease_until": None,
        "error": outcome.error,  # None after a success: the row reads as it ended
        "traceback": outcome.traceback,
    }
    if outcome.status == "retry":
        values |= {"status": "pending", "due_at": now + timedelta(seconds=outcome.retry_in)}
    else:
        values |= {"status": outcome.status, "finished_at": now}
    try:
        async with sessions.begin() as session:
            await session.execute(
                update(Job).where(Job.id == job_id, Job.status == "running").values(values)
            )
    except Exception:
        # The row stays `running`: when its lease runs out the relay runs the job again.
        log.exception("job_outcome_not_recorded", outcome=outcome.status)
        return
    if outcome.status == "failed":
        log.error("task_failed_permanently", error=outcome.error)


async def release_job(
    sessions: async_sessionmaker[AsyncSession], job_id: str, log: FilteringBoundLogger
) -> None:
    """Put a job cut short by a shutdown back to pending, as an interruption. (A process
    that exits before this is written leaves the row running: the relay takes it back
    once its lease runs out.)"""
    try:
        async with sessions.begin() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running")
                .values(
                    status="pending",
                    lease_until=None,
                    due_at=utcnow(),
                    interruptions=Job.interruptions + 1,
                )
            )
    except Exception:
        log.exception("job_release_failed")
        return
    log.warning("job_requeued", reason="shutdown")


async def fail_job(sessions: async_sessionmaker[AsyncSession], job: Job, error: str) -> None:
    """End a job that cannot run (its task is unknown here, or the queue refused it) as
    failed with `error`, and log it as `task_failed_permanently`, unless it had ended."""
    async with sessions.begin() as session:
        ended = await session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status.in_(("pending", "running")))
            .values(status="failed", error=error, finished_at=utcnow(), lease_until=None)
            .returning(Job.id)
        )
        if ended.one_or_none() is None:
            return
    log: FilteringBoundLogger = structlog.get_logger()
    log.error(
        "task_failed_permanently",
        task=job.task,
        job_id=job.id,
        request_id=job.request_id,
        error=error,
    )


async def succeed_job(sessions: async_sessionmaker[AsyncSession], job_id: str) -> None:
    """End a job that ran to success but whose outcome was not written."""
    async with sessions.begin() as session:
        await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(("pending", "running")))
            .values(status="succeeded", finished_at=utcnow(), lease_until=None)
        )


async def add_job(sessions: async_sessionmaker[AsyncSession], job_id: str, task: Task[Any]) -> None:
    """Write a row for a job that no request scheduled (a cron run), unless it has one."""
    async with sessions.begin() as session:
        if await session.get(Job, job_id) is None:
            session.add(new_job(task, (), {}, request_id=None, job_id=job_id))


async def run_with_retries(
    task: Task[Any], job_id: str, *, settings: Settings, resources: Resources
) -> None:
    """Run job `job_id` here and now, waiting between tries while `task`'s policy allows."""
    while True:
        outcome = await run_job(task, job_id, settings=settings, resources=resources)
        if outcome is None or outcome.status != "retry":
            return
        await anyio.sleep(outcome.retry_in)
