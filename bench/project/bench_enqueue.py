"""Enqueue throughput without HTTP: `python bench_enqueue.py KIND SECONDS RESULT_FILE`.

64 coroutines enqueue no-op jobs in a loop for SECONDS, on one client, as a busy
API process would, with KIND: `arq`, arq's own `ArqRedis.enqueue_job`;
`generated`, the generated `QueueRedis.enqueue_job`; `script`, the same one-round-trip
script without the coalescing of concurrent calls into one pipeline.
"""

import asyncio
import json
import sys
import time
from typing import Any

from acme_shop.jobs.queue import _ENQUEUE_SCRIPT, QueueRedis, connect_redis
from acme_shop.logging import new_id
from acme_shop.settings import Settings
from arq.connections import ArqRedis


class UnbatchedRedis(QueueRedis):
    """Sends each job's script on its own, at once."""

    async def _run_script(self, arguments: list[Any]) -> Any:
        return await self.eval(_ENQUEUE_SCRIPT, *arguments)


async def main(kind: str, seconds: float, result_file: str) -> None:
    settings = Settings()
    redis = connect_redis(settings)
    if kind == "script":
        await redis.aclose()
        redis = UnbatchedRedis.from_url(settings.redis_url)
    enqueue = ArqRedis.enqueue_job if kind == "arq" else type(redis).enqueue_job
    count = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            # As the generated dispatch sends a job: its row's id, no arguments.
            job = await enqueue(redis, "noop", _job_id=new_id(), _queue_name=settings.queue_name)
            assert job is not None
            count += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(64)))
    elapsed = time.perf_counter() - started
    await redis.delete(settings.queue_name)
    await redis.aclose()
    with open(result_file, "w") as out:
        json.dump({"kind": kind, "jobs": count, "jobs_per_s": count / elapsed}, out)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), sys.argv[3]))
