"""Drain N no-op jobs with a burst worker; print the seconds it took as JSON.

`python bench_worker.py generated|raw N RESULT_FILE` in a rendered arq project (package
`acme_shop`). `generated` runs the generated `WorkerSettings` with the no-op
task wrapped by `as_arq_function` (so `run_task`: logging, error handling);
`raw` runs a plain arq `Worker` with a plain no-op coroutine. Both read the
same Redis and queue, with the generated settings' max_jobs, job_timeout and
keep_result, and arq's own log configuration (as the `arq` command sets it).
"""

import asyncio
import json
import logging.config
import sys
import time
from typing import Any

from acme_shop.worker import WorkerSettings, as_arq_function
from arq import Worker, func
from arq.connections import create_pool
from arq.logs import default_log_config
from bench_apps import noop


async def raw_noop(ctx: dict[str, Any], request_id: str | None) -> None:
    """The same signature as a generated job: the request id comes first."""


async def main(kind: str, count: int, result_file: str) -> None:
    logging.config.dictConfig(default_log_config(verbose=False))
    settings = WorkerSettings
    redis = await create_pool(settings.redis_settings)
    await redis.flushdb()
    for start in range(0, count, 500):
        await asyncio.gather(
            *(
                redis.enqueue_job("noop", None, _queue_name=settings.queue_name)
                for _ in range(start, min(count, start + 500))
            )
        )
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
    else:
        worker = Worker(functions=[func(raw_noop, name="noop")], **common)
    started = time.perf_counter()
    await worker.main()
    elapsed = time.perf_counter() - started
    await worker.close()
    if worker.jobs_complete != count or worker.jobs_failed:
        raise SystemExit(f"{kind}: {worker.jobs_complete} of {count} jobs complete")
    with open(result_file, "w") as out:
        json.dump({"kind": kind, "jobs": count, "seconds": elapsed}, out)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
