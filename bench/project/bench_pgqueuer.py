"""Drain N no-op jobs with pgqueuer's own QueueManager on PostgreSQL; print the seconds as JSON.

`python bench_pgqueuer.py POSTGRES_URL N RESULT_FILE`, with pgqueuer and asyncpg installed. It
(re)installs pgqueuer's schema in the database (uninstalling a previous install first, so
every run starts from an empty queue), enqueues N jobs for the entrypoint `noop` without
payload in batches of 500 (pgqueuer's list form of `Queries.enqueue`, one statement per
batch), then starts the clock and runs a `QueueManager` over one asyncpg connection
(`AsyncpgDriver`) until the N-th job has run: the no-op entrypoint counts its jobs and sets
`qm.shutdown` at N. The clock stops when `run` returns, so it includes pgqueuer recording the
final jobs' outcomes, as an arq burst worker's run includes recording its results.

Settings, chosen to be fair to an arq worker with max_jobs=10: the entrypoint's
`concurrency_limit=10` (at most 10 jobs picked and running at once, enforced by the dequeue
query) and `run`'s default `batch_size=10` (up to 10 jobs dequeued per query). Everything
else is pgqueuer's default: LISTEN/NOTIFY wakes the worker, `dequeue_timeout` (30 s) is only
the idle poll, and job outcomes are buffered and written in batches as pgqueuer does.
"""

import asyncio
import json
import sys
import time

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

BATCH = 500
CONCURRENCY = 10  # arq's max_jobs in the generated WorkerSettings


async def main(url: str, count: int, result_file: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(connection))
        if await queries.schema_is_installed():
            await queries.uninstall()
        await queries.install()
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)

        qm = QueueManager(queries)
        done = 0

        @qm.entrypoint("noop", concurrency_limit=CONCURRENCY)
        async def noop(job: Job) -> None:
            nonlocal done
            done += 1
            if done == count:
                qm.shutdown.set()

        started = time.perf_counter()
        await qm.run(batch_size=CONCURRENCY)
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    if done != count:
        raise SystemExit(f"{done} of {count} jobs ran")
    result = {"seconds": elapsed, "jobs": count}
    with open(result_file, "w") as out:
        json.dump(result, out)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
