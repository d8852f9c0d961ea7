"""The transactional outbox: how routes schedule tasks.

`await tasks.enqueue(send_welcome_email, user.id)` writes a job row in the
request's own transaction and sends nothing. When the request's session commits
(`deps.get_session`), the committed jobs are dispatched to the backend. A request
that fails rolls back its rows with everything else: nothing is scheduled. A job
whose dispatch fails (Redis down) is still owed by its row, and the relay sends it.
"""

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec

from sqlalchemy.ext.asyncio import AsyncSession

from ..logging import new_id
from ..models import Job, utcnow
from .runtime import Task

P = ParamSpec("P")

Dispatch = Callable[[Sequence[Job]], Awaitable[None]]
"""Hands committed jobs to the backend: `jobs/queue.py` makes one per request."""

_OUTBOX = "outbox"
"""Where a session keeps its request's `TaskQueue` (in `session.info`)."""


class TaskQueue:
    """Schedules tasks in the request's transaction; routes get one as `TasksDep`."""

    def __init__(self, session: AsyncSession, dispatch: Dispatch, *, request_id: str | None):
        self.session = session
        self.dispatch = dispatch
        self.request_id = request_id
        self.written: list[Job] = []
        session.info[_OUTBOX] = self

    async def enqueue(self, task: Task[P], /, *args: P.args, **kwargs: P.kwargs) -> str:
        """Schedule `task(ctx, *args, **kwargs)` once the request commits; return its job id.

        The arguments are stored as JSON: plain data (ids, emails), never ORM objects.
        """
        job = new_job(task, args, kwargs, request_id=self.request_id)
        self.session.add(job)
        self.written.append(job)
        return job.id


def new_job(
    task: Task[Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    request_id: str | None,
    job_id: str | None = None,
) -> Job:
    """A pending job row for `task(ctx, *args, **kwargs)`; its arguments must be JSON."""
    arguments = {"args": list(args), "kwargs": dict(kwargs)}
    try:
        json.dumps(arguments)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{task.name}'s arguments must be plain data (JSON): {exc}. Pass ids, "
            "not objects, and let the task load what it needs."
        ) from exc
    now = utcnow()
    return Job(
        id=job_id or new_id(),
        task=task.name,
        arguments=arguments,
        request_id=request_id,
        status="pending",
        tries=0,
        interruptions=0,
        due_at=now,
        created_at=now,
    )


async def dispatch_committed(session: AsyncSession) -> None:
    """Dispatch the jobs written in `session`, which has just committed."""
    queue: TaskQueue | None = session.info.pop(_OUTBOX, None)
    if queue is not None and queue.written:
        await queue.dispatch(queue.written)
