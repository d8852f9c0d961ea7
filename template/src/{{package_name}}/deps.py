"""What routes can ask for, as `Annotated` aliases: `async def route(log: LoggerDep)`.

Every dependency is an `async def`, even one that only reads `request.state`:
FastAPI runs a plain `def` dependency in a worker thread, and under load those
thread hops cost more than the rest of a small request (measured by the
template's benchmark).
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.typing import FilteringBoundLogger

from .logging import get_logger
from .resources import Resources, get_resources
from .settings import Settings, get_settings
from .tasks.queue import get_task_queue
from .tasks.runtime import TaskQueue

SettingsDep = Annotated[Settings, Depends(get_settings)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
LoggerDep = Annotated[FilteringBoundLogger, Depends(get_logger)]
TasksDep = Annotated[TaskQueue, Depends(get_task_queue)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    async with resources.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
"""The request's session. It closes when the route returns, before the response
and before any task runs: commit before you enqueue, so the task sees the row."""
