"""What routes can ask for, as `Annotated` aliases: `async def route(log: LoggerDep)`.

Every dependency is an `async def`, even one that only reads `request.state`:
FastAPI runs a plain `def` dependency in a worker thread, and under load those
thread hops cost more than the rest of a small request (measured by the
template's benchmark).
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.typing import FilteringBoundLogger

from .jobs import TaskQueue
from .jobs.outbox import Dispatch, dispatch_committed
from .jobs.queue import get_dispatch, lease_of_queued
from .logging import get_logger, get_request_id
from .resources import Resources, get_resources
from .settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
LoggerDep = Annotated[FilteringBoundLogger, Depends(get_logger)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with resources.sessions() as session:
        yield session
        await session.commit()
        await dispatch_committed(session)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
"""The request's transaction. It commits when the route returns, before the response,
with the jobs the route scheduled, which are then dispatched; if the route raises,
it rolls back and nothing is scheduled. A route calls `session.flush()` when it
needs a new row's id (or a constraint checked) before then."""


async def get_task_queue(
    request: Request,
    session: SessionDep,
    dispatch: Annotated[Dispatch, Depends(get_dispatch)],
) -> TaskQueue:
    return TaskQueue(
        session, dispatch, request_id=get_request_id(request), lease=lease_of_queued(request)
    )


TasksDep = Annotated[TaskQueue, Depends(get_task_queue)]
"""Schedules tasks in the request's transaction: `await tasks.enqueue(task, *args)`."""
