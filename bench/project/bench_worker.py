"""Drain N no-op jobs with a burst worker; print the seconds it took as JSON.

`python bench_worker.py generated|floor|raw N RESULT_FILE` in a rendered arq project
(package `acme_shop`). Every kind enqueues the jobs alike, as the generated dispatch sends them
(the task's name, no arguments), on the same Redis and queue, before the clock starts.
`generated` first writes each job's row, as a request does, and runs the generated
`WorkerSettings`' startup (resources, heartbeat, relay) with the no-op task wrapped by
`as_arq_function`: per job, the row's claim (UPDATE ... RETURNING), `run_task`
(context, logging, error handling) and the outcome's record (UPDATE). `raw` runs a
plain arq `Worker` with a plain no-op coroutine. `floor` is the floor under `generated`
(issue 20): the raw arq `Worker` whose coroutine only claims and records the job's row
through the generated engine's batched writes (`Runner.write`), without the generated
worker around it (no context, log lines, timeout or error handling). All with the
generated settings' max_jobs, job_timeout and keep_result, and arq's own log
configuration (as the `arq` command sets it).
"""

import asyncio
import json
import logging.config
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

from acme_shop.jobs.outbox import new_job
from acme_shop.jobs.records import Runner, ToClaim, ToRecord
from acme_shop.jobs.runtime import Outcome
from acme_shop.logging import new_id
from acme_shop.models import Job
from acme_shop.resources import open_resources
from acme_shop.settings import Settings
from acme_shop.worker import WorkerSettings, as_arq_function
from arq import Worker, func
from arq.connections import ArqRedis, create_pool
from arq.logs import default_log_config
from bench_apps import noop
from sqlalchemy import delete, select
from sqlalchemy import func as sql_func

BATCH = 500


async def raw_noop(ctx: dict[str, Any]) -> None:
    """The same signature as a generated job: no arguments besides arq's context."""


def claim_and_record(runner: Runner) -> Any:
    """The floor's job: the row's claim and its end, as `run_job` writes them."""

    async def noop(ctx: dict[str, Any]) -> None:
        job_id, run_id = ctx["job_id"], new_id()
        claim = await runner.write(ToClaim(job_id, run_id))
        assert claim is not None, job_id
        await runner.write(ToRecord(job_id, run_id, Outcome("succeeded"), held_here=False))

    return noop


async def write_rows(count: int) -> list[str]:
    """Delete every job row, then write `count` pending no-op rows; their ids."""
    async with open_resources(Settings()) as resources:
        async with resources.sessions.begin() as session:
            await session.execute(delete(Job))
        ids = []
        for start in range(0, count, BATCH):
            rows = [
                new_job(noop, (), {}, request_id=None)
                for _ in range(start, min(count, start + BATCH))
            ]
            async with resources.sessions.begin() as session:
                session.add_all(rows)
            ids += [row.id for row in rows]
        return ids


async def enqueue(redis: ArqRedis, queue_name: str, job_ids: list[str]) -> None:
    for start in range(0, len(job_ids), BATCH):
        await asyncio.gather(
            *(
                redis.enqueue_job("noop", _job_id=job_id, _queue_name=queue_name)
                for job_id in job_ids[start : start + BATCH]
            )
        )


async def main(kind: str, count: int, result_file: str) -> None:
    logging.config.dictConfig(default_log_config(verbose=False))
    settings = WorkerSettings
    redis = await create_pool(settings.redis_settings)
    stack = AsyncExitStack()
    await redis.flushdb()
    if kind in ("generated", "floor"):
        job_ids = await write_rows(count)
    else:
        job_ids = [new_id() for _ in range(count)]
    await enqueue(redis, settings.queue_name, job_ids)
    common: dict[str, Any] = {
        "redis_pool": redis,
        "queue_name": settings.queue_name,
        "burst": True,
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout,
        "keep_result": settings.keep_result,
        "poll_delay": 0.01,
        "handle_signals": False,
    }
    if kind == "generated":
        worker = Worker(
            functions=[as_arq_function(noop)],
            on_startup=settings.on_startup,
            on_shutdown=settings.on_shutdown,
            **common,
        )
    elif kind == "floor":
        app_settings = Settings()
        resources = await stack.enter_async_context(open_resources(app_settings))
        runner = Runner(app_settings, resources.engine, holds_queued=False)
        worker = Worker(functions=[func(claim_and_record(runner), name="noop")], **common)
    else:
        worker = Worker(functions=[func(raw_noop, name="noop")], **common)
    started = time.perf_counter()
    await worker.main()
    elapsed = time.perf_counter() - started
    await worker.close()
    await stack.aclose()
    if worker.jobs_complete != count or worker.jobs_failed:
        raise SystemExit(f"{kind}: {worker.jobs_complete} of {count} jobs complete")
    if kind in ("generated", "floor"):
        await check_rows_succeeded(count)
    with open(result_file, "w") as out:
        json.dump({"kind": kind, "jobs": count, "seconds": elapsed}, out)


async def check_rows_succeeded(count: int) -> None:
    """Every row ended `succeeded`: the worker ran the real path, not a skip."""
    async with open_resources(Settings()) as resources, resources.sessions() as session:
        succeeded = await session.scalar(
            select(sql_func.count()).select_from(Job).where(Job.status == "succeeded")
        )
    if succeeded != count:
        raise SystemExit(f"{succeeded} of {count} rows succeeded")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
