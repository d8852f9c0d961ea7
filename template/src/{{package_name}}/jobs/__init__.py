"""The machinery that schedules, runs and accounts for tasks; `tasks/` holds the tasks.

A route schedules with `TaskQueue.enqueue` (`deps.TasksDep`); a task is declared
with `@task()` and receives a `TaskContext`.
"""

from .outbox import TaskQueue
from .runtime import Task, TaskContext, task

__all__ = ["Task", "TaskContext", "TaskQueue", "task"]
