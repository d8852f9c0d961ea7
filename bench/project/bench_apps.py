"""The apps the benchmark serves, copied into a rendered project (package `acme_shop`).

`uvicorn bench_apps:<name> --factory` with <name>:
- bare: a FastAPI app with one endpoint that returns a small JSON object;
- raw_arq: the same endpoint calling arq's own `ArqRedis.enqueue_job`;
- fast_enqueue: the same endpoint calling the generated `QueueRedis.enqueue_job`
  (arq backend only): the enqueue alone, without the generated app around it;
- generated: the generated app (`create_app`) plus a router whose endpoints take
  `TasksDep` and `LoggerDep`, enqueue a no-op (or a 2-second) task and log.
"""

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from acme_shop.deps import LoggerDep, TasksDep
from acme_shop.main import create_app
from acme_shop.jobs import TaskContext, task
from fastapi import APIRouter, FastAPI, Request


@task()
async def noop(ctx: TaskContext) -> None:
    """Does nothing: what is measured is everything around it."""


@task()
async def sleep_2s(ctx: TaskContext) -> None:
    await asyncio.sleep(2)


router = APIRouter()


@router.post("/noop")
async def enqueue_noop(tasks: TasksDep, log: LoggerDep) -> dict[str, str]:
    job_id = await tasks.enqueue(noop)
    log.info("noop_enqueued", job_id=job_id)
    return {"job": job_id}


@router.post("/sleep")
async def enqueue_sleep(tasks: TasksDep, log: LoggerDep) -> dict[str, str]:
    job_id = await tasks.enqueue(sleep_2s)
    log.info("sleep_enqueued", job_id=job_id)
    return {"job": job_id}


def generated() -> FastAPI:
    app = create_app()
    app.include_router(router)
    return app


def generated_gc_off() -> FastAPI:
    """A diagnostic: the generated app with Python's cyclic garbage collector off."""
    gc.disable()
    return generated()


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
    from acme_shop.settings import Settings
    from acme_shop.jobs.queue import connect_redis

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
        job = await redis.enqueue_job("noop", None, _queue_name=queue_name)
        assert job is not None
        return {"job": job.job_id}

    return app
