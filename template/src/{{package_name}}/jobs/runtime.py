"""How a task runs: what it receives, its retry policy, and the one place where
its errors are handled (`run_task`, one try).

A task is a plain `async def name(ctx: TaskContext, *args) -> None` under the
`@task()` decorator. Its arguments are plain data (ids, emails): it runs after
the response, possibly in another process, and loads what it needs itself.
"""

import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, Literal, ParamSpec

import anyio
import structlog
from structlog.typing import FilteringBoundLogger

from ..resources import Resources
from ..settings import Settings

P = ParamSpec("P")

_SECRET_NAMES = ("password", "secret", "token", "key", "authorization")


@dataclass(frozen=True)
class TaskContext:
    """What a task is given besides its own arguments."""

    task_name: str
    log: FilteringBoundLogger
    """Bound to the task, job, request and attempt: every line leads back to the request."""
    settings: Settings
    resources: Resources
    """Shared clients: `async with ctx.resources.sessions() as session` for the database."""
    job_id: str
    request_id: str | None
    """The id of the request that scheduled the task, if a request did."""
    attempt: int
    """1 on the first try."""


@dataclass(frozen=True)
class Task(Generic[P]):
    """A task function and its retry policy; made by the `task` decorator."""

    function: Callable[Concatenate[TaskContext, P], Awaitable[None]]
    retry_on: tuple[type[Exception], ...]
    """Exceptions that mean "try again later"; any other exception fails the task at once."""
    tries: int
    """How many tries in all, the first included."""
    timeout: float | None
    """Seconds a try may take before it is cancelled and counts as failed; None: the
    `task_timeout_seconds` setting."""

    @property
    def name(self) -> str:
        return self.function.__name__


def task(
    *, retry_on: tuple[type[Exception], ...] = (), tries: int = 1, timeout: float | None = None
) -> Callable[[Callable[Concatenate[TaskContext, P], Awaitable[None]]], Task[P]]:
    """Declare a task: `@task()`, or `@task(retry_on=(SomeTransientError,), tries=4)`.

    `retry_on`: the exceptions worth another try; `tries`: how many tries in all;
    `timeout`: seconds a try may take (a try past it fails, and is retried while tries
    are left). Default: the `task_timeout_seconds` setting.
    """
    if tries < 1:
        raise ValueError("tries must be at least 1")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive")

    def declare(function: Callable[Concatenate[TaskContext, P], Awaitable[None]]) -> Task[P]:
        return Task(function, retry_on, tries, timeout)

    return declare


@dataclass(frozen=True)
class Outcome:
    """What became of one try."""

    status: Literal["succeeded", "retry", "failed"]
    retry_in: float = 0.0
    """Seconds to wait before the next try, when status is "retry"."""
    error: str | None = None
    """`Type: message` of the exception that ended the try, unless it succeeded."""
    traceback: str | None = None


def make_context(
    task: Task[Any],
    *,
    settings: Settings,
    resources: Resources,
    job_id: str,
    request_id: str | None,
    attempt: int,
) -> TaskContext:
    base: FilteringBoundLogger = structlog.get_logger()
    log = base.bind(task=task.name, job_id=job_id, request_id=request_id, attempt=attempt)
    return TaskContext(task.name, log, settings, resources, job_id, request_id, attempt)


def timeout_of(task: Task[Any], settings: Settings) -> float:
    """Seconds a try of `task` may take."""
    return task.timeout if task.timeout is not None else settings.task_timeout_seconds


def retry_delay(settings: Settings, attempt: int) -> float:
    """Exponential backoff: the delay after try number `attempt`."""
    delay = settings.task_retry_backoff_seconds * 2 ** (attempt - 1)
    return float(min(delay, settings.task_retry_backoff_max_seconds))


def summarize_arguments(task: Task[Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A short, log-safe rendering of `task`'s arguments `args` and `kwargs`: long values
    cut, and hidden the value of every parameter whose name says it is a secret
    (password, token, ...), whether it was passed by name or by position."""

    def hide_or_short(name: str, value: Any) -> str:
        if is_secret(name):
            return "***"
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."

    names = positional_names(task, len(args))
    parts = [hide_or_short(name, value) for name, value in zip(names, args, strict=True)]
    parts += [f"{name}={hide_or_short(name, value)}" for name, value in kwargs.items()]
    return ", ".join(parts)[:500]


def positional_names(task: Task[Any], count: int) -> list[str]:
    """The parameter names that `count` positional arguments of `task` bind to, after its
    `ctx` (all of a `*name` parameter's take its name); any left over, which the call will
    refuse, get a name that hides them."""
    parameters = list(inspect.signature(task.function).parameters.values())[1:]
    names: list[str] = []
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            names += [parameter.name] * (count - len(names))
        elif parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            names.append(parameter.name)
    names += ["unexpected_secret"] * (count - len(names))
    return names[:count]


def is_secret(name: str) -> bool:
    """Whether a parameter called `name` carries a secret, judged by its name."""
    return any(secret in name.lower() for secret in _SECRET_NAMES)


async def run_task(
    task: Task[Any], ctx: TaskContext, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Outcome:
    """Run one try of `task` within its timeout and handle whatever it raises.

    Never raises (except cancellation): a failure is logged with its traceback, and
    the outcome says whether to try again. A timeout fails the try like an error the
    task declared transient: it is retried while tries are left.
    """
    log = ctx.log
    arguments = summarize_arguments(task, tuple(args), dict(kwargs))
    log.info("task_started", arguments=arguments)
    started = time.perf_counter()
    try:
        with anyio.fail_after(timeout_of(task, ctx.settings)):
            await task.function(ctx, *args, **kwargs)
    except anyio.get_cancelled_exc_class():
        log.warning("task_cancelled", duration_ms=_since(started))
        raise
    except Exception as exc:
        transient = isinstance(exc, (*task.retry_on, TimeoutError))
        will_retry = transient and ctx.attempt < task.tries
        retry_in = retry_delay(ctx.settings, ctx.attempt) if will_retry else 0.0
        message = str(exc)
        if not message and isinstance(exc, TimeoutError):  # anyio's says nothing
            message = f"the try ran past its {timeout_of(task, ctx.settings):g} s timeout"
        error = f"{type(exc).__name__}: {message}"
        log.error(
            "task_failed",
            arguments=arguments,
            error=error,
            duration_ms=_since(started),
            will_retry=will_retry,
            retry_in=retry_in,
            tries=task.tries,
            exc_info=exc,
        )
        status: Literal["retry", "failed"] = "retry" if will_retry else "failed"
        return Outcome(status, retry_in, error, "".join(traceback.format_exception(exc)))
    log.info("task_finished", duration_ms=_since(started))
    return Outcome("succeeded")


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
