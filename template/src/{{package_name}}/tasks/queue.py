"""Scheduling tasks. Routes depend on `TaskQueue` only, never on the backend.

This backend is FastAPI's `BackgroundTasks`: a task runs in the API process
after the response is sent, one after another in the order scheduled. A
restart or crash loses the tasks not yet run.
"""

from typing import Any, ParamSpec, Protocol

import anyio
from fastapi import BackgroundTasks, Request

from ..logging import get_request_id, new_id
from ..resources import Resources, get_resources
from ..settings import Settings, get_settings
from .runtime import Task, make_context, run_task

P = ParamSpec("P")


class TaskQueue(Protocol):
    async def enqueue(self, task: Task[P], /, *args: P.args, **kwargs: P.kwargs) -> str:
        """Schedule `task(ctx, *args, **kwargs)` and return its job id."""
        ...


class BackgroundTaskQueue:
    """Runs each task after the response, with in-process retries."""

    def __init__(
        self,
        background_tasks: BackgroundTasks,
        *,
        settings: Settings,
        resources: Resources,
        request_id: str | None,
    ) -> None:
        self.background_tasks = background_tasks
        self.settings = settings
        self.resources = resources
        self.request_id = request_id

    async def enqueue(self, task: Task[P], /, *args: P.args, **kwargs: P.kwargs) -> str:
        job_id = new_id()
        self.background_tasks.add_task(
            run_in_process,
            task,
            args,
            kwargs,
            settings=self.settings,
            resources=self.resources,
            job_id=job_id,
            request_id=self.request_id,
        )
        return job_id


async def run_in_process(
    task: Task[Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    settings: Settings,
    resources: Resources,
    job_id: str,
    request_id: str | None,
) -> None:
    """Run `task` here and now, waiting between tries while its policy allows more."""
    attempt = 1
    while True:
        ctx = make_context(
            task,
            settings=settings,
            resources=resources,
            job_id=job_id,
            request_id=request_id,
            attempt=attempt,
        )
        outcome = await run_task(task, ctx, *args, **kwargs)
        if outcome.status != "retry":
            return
        await anyio.sleep(outcome.retry_in)
        attempt += 1


def get_task_queue(request: Request, background_tasks: BackgroundTasks) -> TaskQueue:
    return BackgroundTaskQueue(
        background_tasks,
        settings=get_settings(request),
        resources=get_resources(request),
        request_id=get_request_id(request),
    )


async def check_task_backend(request: Request) -> dict[str, bool]:
    """Whether each part of the task backend is up; in-process tasks have no parts."""
    return {}
