"""The task registry: every task defined in a module of this package, by name.

A task is an `async def` under `@task()` in any module of `tasks/`; `TASKS` finds it
there, so adding a task means adding or editing your own module, never this file (a
template update then has nothing of yours to merge here). A worker process takes its
functions from `TASKS`; a job row names its task, so two tasks of one name are refused.
"""

import importlib
import pkgutil
from typing import Any

from ..jobs import Task


def discover_tasks() -> list[Task[Any]]:
    """The tasks defined in the modules of this package, module by module (by name), each
    in the order of its module."""
    found: dict[str, Task[Any]] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            # A task imported from another module is found in its own.
            if not isinstance(value, Task) or value.function.__module__ != module.__name__:
                continue
            if value.name in found:
                first = found[value.name].function.__module__
                raise RuntimeError(
                    f"two tasks are named {value.name!r} ({first} and {module.__name__}):"
                    " a job names its task, so rename one"
                )
            found[value.name] = value
    return list(found.values())


TASKS: list[Task[Any]] = discover_tasks()
