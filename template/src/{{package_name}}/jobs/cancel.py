"""Cancelling a pending job: its recorded end, `cancelled`, by an operator's hand.

Only a pending job can be cancelled: one running has started its work, which a row
cannot call back. The write is conditional (`status = 'pending'`), so it cannot race a
run: either the cancel wins and every later claim of the job is refused (a runner that
still holds it, in memory or in Redis, logs `job_skipped`), or the claim won and the job
is no longer pending. The relay never takes a cancelled job back.
"""

import structlog
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.typing import FilteringBoundLogger

from ..models import Job, utcnow


async def cancel_pending(session: AsyncSession, job_id: str, *, by: str) -> Job | None:
    """Cancel job `job_id` if it is pending; the job cancelled, or None when it was not
    pending (any more). `by`: who asked, for the log line. The caller commits."""
    cancelled = await session.scalar(
        update(Job)
        .where(Job.id == job_id, Job.status == "pending")
        .values(status="cancelled", finished_at=utcnow(), lease_until=None, run_id=None)
        .returning(Job)
    )
    if cancelled is not None:
        log: FilteringBoundLogger = structlog.get_logger()
        log.info(
            "job_cancelled",
            task=cancelled.task,
            job_id=cancelled.id,
            request_id=cancelled.request_id,
            by=by,
        )
    return cancelled
