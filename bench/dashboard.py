"""The jobs dashboard with a big table: `uv run python -m bench.dashboard` (about 2
minutes).

Renders the template (background, examples) on SQLite and on PostgreSQL, fills each
database with 100,000 jobs (a week of them: 90% succeeded, 5% failed, 3% pending, 1%
running, 1% cancelled, over six tasks), serves the app with uvicorn, logs in, and times
each page one request after another: the overview, the lists (all, failed, one task,
one request), a job's page, and GET /metrics (which reads the same table).

Options: --jobs N (100000), --requests N per page (20). PostgreSQL: TEST_DATABASE_URL,
else a throwaway server.
"""

import argparse
import json
import os
import random
import re
import sqlite3
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench.hashing import serve_generated
from bench.run import Databases, prepare, project_env
from tests.postgres_server import running_postgres

TOKEN = "bench-dashboard-token-0123"
TASKS = [
    "send_welcome_email",
    "send_order_confirmation",
    "update_inventory",
    "notify_admin",
    "process_event",
    "process_image",
]
STATUSES = ["succeeded"] * 90 + ["failed"] * 5 + ["pending"] * 3 + ["running", "cancelled"]


def job_rows(count: int) -> list[tuple[object, ...]]:
    """`count` jobs over the past week, in the columns `fill` writes."""
    now, rng = datetime.now(UTC), random.Random(7)
    rows = []
    for _ in range(count):
        created = now - timedelta(seconds=rng.uniform(0, 7 * 86400))
        status = rng.choice(STATUSES)
        ended = status in ("succeeded", "failed", "cancelled")
        finished = created + timedelta(seconds=rng.uniform(0.01, 5)) if ended else None
        error = "TransientEmailError: mail server said 451" if status == "failed" else None
        arguments = json.dumps({"args": [rng.randrange(10**6)], "kwargs": {}})
        request_id = uuid.uuid4().hex
        rows.append(
            (uuid.uuid4().hex, rng.choice(TASKS), arguments, request_id, status,
             1 if ended else 0, 0, created, created, finished, error)
        )  # fmt: skip
    return rows


COLUMNS = (
    "id, task, arguments, request_id, status, tries, interruptions, due_at, created_at,"
    " finished_at, error"
)


def fill(url: str, rows: list[tuple[object, ...]]) -> None:
    if url.startswith("sqlite"):
        # SQLAlchemy's SQLite format: naive UTC times, as the app writes them.
        def naive(value: object) -> object:
            if isinstance(value, datetime):
                return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
            return value

        with closing(sqlite3.connect(url.split(":///", 1)[1])) as connection:
            connection.executemany(
                f"INSERT INTO jobs ({COLUMNS}) VALUES ({', '.join('?' * 11)})",
                [tuple(map(naive, row)) for row in rows],
            )
            connection.commit()
            connection.execute("ANALYZE")
        return
    with psycopg.connect(url.replace("+asyncpg", "", 1)) as connection:
        with connection.cursor().copy(f"COPY jobs ({COLUMNS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        connection.commit()
        connection.execute("ANALYZE jobs")


def log_in(client: httpx.Client) -> None:
    """Logs `client` in; its cookie is sent by hand (a Secure cookie, plain HTTP)."""
    answer = client.post("/admin/login", data={"token": TOKEN})
    assert answer.status_code == 303, answer.text
    cookie = re.match(r"admin_session=([^;]+)", answer.headers["set-cookie"])
    assert cookie
    client.headers["Cookie"] = f"admin_session={cookie.group(1)}"


def timings(client: httpx.Client, path: str, requests: int) -> list[float]:
    client.get(path)  # warm: templates compiled, statements cached
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    return times


def measure(
    project: Path, url: str, rows: list[tuple[object, ...]], requests: int, log: Path
) -> dict[str, list[float]]:
    fill(url, rows)
    env = project_env(
        ACME_SHOP_DATABASE_URL=url, ACME_SHOP_ADMIN_TOKEN=TOKEN, ACME_SHOP_LOG_LEVEL="WARNING"
    )
    a_job, a_request = rows[len(rows) // 2][0], rows[len(rows) // 3][3]
    pages = {
        "overview": "/admin/",
        "list, all": "/admin/jobs",
        "list, failed": "/admin/jobs?status=failed",
        "list, one task": f"/admin/jobs?task={TASKS[0]}",
        "list, one request": f"/admin/jobs?request_id={a_request}",
        "a job's page": f"/admin/jobs/{a_job}",
        "GET /metrics": "/metrics",
    }
    with (
        serve_generated(project, env, log) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        log_in(client)
        return {name: timings(client, path, requests) for name, path in pages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    rows = job_rows(args.jobs)
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        workdir = Path(folder)
        postgres = stack.enter_context(running_postgres())
        for database in ("sqlite", "postgresql"):
            project = prepare(workdir, "background", database)
            databases = Databases(workdir, postgres if database == "postgresql" else None)
            env = databases.new(project, project_env(), "dashboard")
            try:
                results[database] = measure(
                    project,
                    env["ACME_SHOP_DATABASE_URL"],
                    rows,
                    args.requests,
                    workdir / f"{database}.log",
                )
            finally:
                databases.drop()
    print(
        f"\nThe dashboard with {args.jobs:,} jobs: ms per request, median / p95 of "
        f"{args.requests} one after another"
    )
    print(f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores)\n")
    print("| page | SQLite | PostgreSQL |")
    print("| --- | ---: | ---: |")
    for name in results["sqlite"]:
        cells = []
        for database in ("sqlite", "postgresql"):
            times = sorted(results[database][name])
            p95 = times[max(0, round(0.95 * len(times)) - 1)]
            cells.append(f"{statistics.median(times):.1f} / {p95:.1f}")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
