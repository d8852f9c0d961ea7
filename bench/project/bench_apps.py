"""The apps the benchmark serves, copied into a rendered project (package `acme_shop`).

`uvicorn bench_apps:<name> --factory` with <name>:
- bare: a FastAPI app with one endpoint that returns a small JSON object;
- raw_arq: the same endpoint calling arq's own `ArqRedis.enqueue_job`;
- fast_enqueue: the same endpoint calling the generated `QueueRedis.enqueue_job`
  (arq backend only): the enqueue alone, without the generated app around it;
- generated: the generated app (`create_app`) plus a router whose endpoints take
  `TasksDep` and `LoggerDep`, enqueue a no-op (or a 2-second) task and log: each
  request writes the task's job row (the outbox) and commits, then dispatches it;
  POST /event also stores an event row first, in the same transaction;
- generated_no_outbox: the same app and endpoints, with `deps.get_task_queue`
  replaced by a queue that writes no row and dispatches at once (background: runs
  the task with `run_task` after the response, as `run_job` does but without the
  row's claim and record; arq: enqueues the job): what the outbox costs per request;
- generated_synchronous_normal: `generated` with SQLite's `synchronous=NORMAL`;
- generated_gc_off: a diagnostic, `generated` with the garbage collector off;
- naive: what a user writes without the outbox on the same stack, the honest
  reference (issue 20): a route that opens an SQLAlchemy `AsyncSession`, inserts an
  event, commits, and adds a no-op to `BackgroundTasks`. No job row, nothing durable;
- naive_on_generated_engine: `naive` on the generated project's engine;
- naive_with_durable_job: the floor under `generated` (issue 20): `naive` on the
  generated engine whose row is the task's job row (as `TasksDep` writes it), claimed
  and recorded after the response by the generated engine's own batched writes
  (`Runner.write`), with no app around it: no middleware, dependencies or log lines.
  What any durable route costs on this stack, however thin its app;
- driver_sqlite3, driver_asyncpg: the drivers' limit: the same INSERT and commit with
  the standard library's `sqlite3` on the event loop (WAL, synchronous=NORMAL), or
  with a raw `asyncpg` pool, without SQLAlchemy or a task.

The bench's tasks are added to the registry (`tasks.TASKS`), as a project adds its
own: the background backend looks a job's task up there when it runs it.
"""

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from acme_shop import deps
from acme_shop.deps import LoggerDep, SessionDep, TasksDep
from acme_shop.jobs import Task, TaskContext, task
from acme_shop.jobs.runtime import make_context, run_task
from acme_shop.logging import get_request_id, new_id
from acme_shop.main import create_app
from acme_shop.models import Event
from acme_shop.resources import get_resources
from acme_shop.settings import get_settings
from acme_shop.tasks import TASKS
from fastapi import APIRouter, BackgroundTasks, FastAPI, Request


@task()
async def noop(ctx: TaskContext) -> None:
    """Does nothing: what is measured is everything around it."""


@task()
async def sleep_2s(ctx: TaskContext) -> None:
    await asyncio.sleep(2)


@task()
async def note_event(ctx: TaskContext, event_id: int) -> None:
    """Does nothing with its event: a task with an argument, as a route schedules one."""


TASKS.extend([noop, sleep_2s, note_event])


router = APIRouter()


@router.post("/noop")
async def enqueue_noop(tasks: TasksDep, log: LoggerDep) -> dict[str, str]:
    job_id = await tasks.enqueue(noop)
    log.info("noop_enqueued", job_id=job_id)
    return {"job": job_id}


@router.post("/event")
async def store_event(session: SessionDep, tasks: TasksDep, log: LoggerDep) -> dict[str, Any]:
    """A route that writes anyway, as POST /events does: an event row, then a task for it,
    committed together; the job row is then one more INSERT in that transaction."""
    event = Event(name="bench", data={})
    session.add(event)
    await session.flush()
    job_id = await tasks.enqueue(note_event, event.id)
    log.info("event_stored", event_id=event.id, job_id=job_id)
    return {"event": event.id, "job": job_id}


@router.post("/sleep")
async def enqueue_sleep(tasks: TasksDep, log: LoggerDep) -> dict[str, str]:
    job_id = await tasks.enqueue(sleep_2s)
    log.info("sleep_enqueued", job_id=job_id)
    return {"job": job_id}


def generated() -> FastAPI:
    app = create_app()
    app.include_router(router)
    return app


class QueueWithoutRows:
    """What routes get as `TasksDep` in `generated_no_outbox`: `enqueue` writes no job
    row and hands the task straight to the backend with `send` (bench only: a job
    without a row is lost if its process dies)."""

    def __init__(self, send: Callable[[Task[Any], str, tuple[Any, ...]], Awaitable[None]]):
        self.send = send

    async def enqueue(self, task: Task[Any], /, *args: Any) -> str:
        job_id = new_id()
        await self.send(task, job_id, args)
        return job_id


async def background_queue_without_rows(
    request: Request, session: SessionDep, background_tasks: BackgroundTasks
) -> QueueWithoutRows:
    """Runs each task after the response, one try with `run_task`: the same work and
    log lines as `run_job`, without claiming and recording a row. It takes the request's
    session as `get_task_queue` does, so that only the row differs."""
    settings, resources = await get_settings(request), await get_resources(request)

    async def send(task: Task[Any], job_id: str, args: tuple[Any, ...]) -> None:
        ctx = make_context(
            task,
            settings=settings,
            resources=resources,
            job_id=job_id,
            request_id=get_request_id(request),
            attempt=1,
        )
        background_tasks.add_task(run_task, task, ctx, args, {})

    return QueueWithoutRows(send)


async def arq_queue_without_rows(request: Request, session: SessionDep) -> QueueWithoutRows:
    """Enqueues each job to Redis at once, as the outbox's dispatch does after the commit:
    the app's `QueueRedis`, the job's id as arq's, no arguments."""
    settings = await get_settings(request)

    async def send(task: Task[Any], job_id: str, args: tuple[Any, ...]) -> None:
        await request.state.arq_redis.enqueue_job(
            task.name, _job_id=job_id, _queue_name=settings.queue_name
        )

    return QueueWithoutRows(send)


def generated_no_outbox() -> FastAPI:
    """`generated`, its tasks dispatched without a job row."""
    from acme_shop.jobs import queue

    app = generated()
    arq_backend = hasattr(queue, "send_jobs")
    without_rows = arq_queue_without_rows if arq_backend else background_queue_without_rows
    app.dependency_overrides[deps.get_task_queue] = without_rows
    return app


def generated_synchronous_normal() -> FastAPI:
    """`generated` on SQLite with `DATABASE_SYNCHRONOUS=NORMAL` (commits wait for no disk)."""
    os.environ["ACME_SHOP_DATABASE_SYNCHRONOUS"] = "NORMAL"
    return generated()


def generated_gc_off() -> FastAPI:
    """A diagnostic: the generated app with Python's cyclic garbage collector off."""
    gc.disable()
    return generated()


def naive() -> FastAPI:
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    engine = create_async_engine(os.environ["ACME_SHOP_DATABASE_URL"])
    return naive_app(async_sessionmaker(engine, expire_on_commit=False))


def naive_on_generated_engine() -> FastAPI:
    """`naive` on the engine the generated project makes (`db.create_engine`: on SQLite WAL,
    `busy_timeout` and the process's turns to write; on PostgreSQL its pool, pre-ping):
    what the engine's settings cost or give, apart from the app around it."""
    from acme_shop.db import create_engine, create_sessionmaker
    from acme_shop.settings import Settings

    return naive_app(create_sessionmaker(create_engine(Settings())))


def naive_with_durable_job() -> FastAPI:
    from acme_shop.db import create_engine, create_sessionmaker
    from acme_shop.jobs.outbox import new_job
    from acme_shop.jobs.records import Runner, ToClaim, ToRecord
    from acme_shop.jobs.runtime import Outcome
    from acme_shop.settings import Settings

    settings = Settings()
    engine = create_engine(settings)
    sessions = create_sessionmaker(engine)
    runner = Runner(settings, engine, holds_queued=True)
    app = FastAPI()

    async def claim_and_record(job_id: str) -> None:
        run_id = new_id()
        claim = await runner.write(ToClaim(job_id, run_id))
        assert claim is not None, job_id
        await runner.write(ToRecord(job_id, run_id, Outcome("succeeded"), held_here=False))

    @app.post("/noop")
    async def insert_then_schedule(background_tasks: BackgroundTasks) -> dict[str, str]:
        async with sessions() as session:
            job = new_job(noop, (), {}, request_id=None)
            job.lease_until = job.created_at + runner.lease
            session.add(job)
            await session.commit()
        background_tasks.add_task(claim_and_record, job.id)
        return {"job": job.id}

    return app


def naive_app(sessions: Any) -> FastAPI:
    """The naive route on `sessions` (an `async_sessionmaker`)."""
    app = FastAPI()

    def nothing() -> None:
        """The task: a plain function, as the FastAPI docs show one."""

    @app.post("/noop")
    async def insert_then_schedule(background_tasks: BackgroundTasks) -> dict[str, int]:
        async with sessions() as session:
            event = Event(name="bench", data={})
            session.add(event)
            await session.commit()
        background_tasks.add_task(nothing)
        return {"event": event.id}

    return app


def driver_sqlite3() -> FastAPI:
    import sqlite3

    path = os.environ["ACME_SHOP_DATABASE_URL"].partition(":///")[2]
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    app = FastAPI()

    @app.post("/noop")
    async def insert() -> dict[str, int]:
        cursor = connection.execute(
            "INSERT INTO events (name, data, created_at) VALUES ('bench', '{}', "
            "strftime('%Y-%m-%d %H:%M:%f', 'now'))"
        )
        return {"event": cursor.lastrowid or 0}

    return app


def driver_asyncpg() -> FastAPI:
    import asyncpg

    url = os.environ["ACME_SHOP_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        pool = await asyncpg.create_pool(url, min_size=5, max_size=15)
        yield {"pool": pool}
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/noop")
    async def insert(request: Request) -> dict[str, int]:
        event_id = await request.state.pool.fetchval(
            "INSERT INTO events (name, data, created_at) VALUES ('bench', '{}', now()) RETURNING id"
        )
        return {"event": event_id}

    return app


def bare() -> FastAPI:
    app = FastAPI()

    @app.post("/noop")
    async def noop_endpoint() -> dict[str, str]:
        return {"job": "none"}

    @app.post("/sleep")
    async def sleep_endpoint() -> dict[str, str]:
        return {"job": "none"}

    return app


def raw_arq() -> FastAPI:
    from arq.connections import RedisSettings, create_pool  # arq projects only

    return enqueue_app(
        lambda: create_pool(RedisSettings.from_dsn(os.environ["ACME_SHOP_REDIS_URL"]))
    )


def fast_enqueue() -> FastAPI:
    from acme_shop.jobs.queue import connect_redis
    from acme_shop.settings import Settings

    async def connect() -> Any:
        return connect_redis(Settings())

    return enqueue_app(connect)


def enqueue_app(connect: Callable[[], Awaitable[Any]]) -> FastAPI:
    from arq.connections import ArqRedis

    queue_name = os.environ["ACME_SHOP_QUEUE_NAME"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        redis = await connect()
        yield {"redis": redis}
        await redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/noop")
    async def enqueue_noop_raw(request: Request) -> dict[str, str]:
        redis: ArqRedis = request.state.redis
        # As the generated dispatch sends a job: its name, no arguments (they are in its row).
        job = await redis.enqueue_job("noop", _queue_name=queue_name)
        assert job is not None
        return {"job": job.job_id}

    return app
