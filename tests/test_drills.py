"""Reliability drills on real processes: nothing a task does is lost or silent.

Each drill serves a rendered project with uvicorn (and arq workers) on loopback,
counts outcomes, prints its figures and asserts that nothing is lost.
"""

import shutil
import sqlite3
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import render, run
from .redis_server import answers, free_port
from .support import Process, SmtpSink, app_environment, running_smtp_sink, start_api, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# A test-only task and route, added to each rendered project the way a user adds one.
DRILL_TASK = '''"""Drill only: sleeps, and notes each start and end in the file $DRILL_LOG."""

import os

import anyio

from .runtime import TaskContext, task


@task()
async def drill_sleep(ctx: TaskContext, seconds: float) -> None:
    log = anyio.Path(os.environ["DRILL_LOG"])
    async with await anyio.open_file(log, "a") as out:
        await out.write(f"start {ctx.job_id}\\n")
    await anyio.sleep(seconds)
    async with await anyio.open_file(log, "a") as out:
        await out.write(f"end {ctx.job_id}\\n")
'''
DRILL_ROUTE = """from fastapi import APIRouter

from ..deps import TasksDep
from ..tasks.drill import drill_sleep

router = APIRouter()


@router.post("/drill")
async def drill(seconds: float, tasks: TasksDep) -> dict[str, str]:
    return {"job": await tasks.enqueue(drill_sleep, seconds)}
"""
ORDER = {"email": "bob@example.com", "sku": "MUG-1", "quantity": 2}
JOB_TIMEOUT = 60  # WorkerSettings.job_timeout in the generated worker.py


@pytest.fixture(scope="module", params=["background", "arq"])
def drill_project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = render(
        tmp_path_factory.mktemp(f"drill-{request.param}") / "acme-shop", task_backend=request.param
    )
    package = project / "src/acme_shop"
    (package / "tasks/drill.py").write_text(DRILL_TASK)
    (package / "api/drill.py").write_text(DRILL_ROUTE)
    with (package / "tasks/__init__.py").open("a") as registry:
        registry.write(
            "\nfrom .drill import drill_sleep  # noqa: E402\n\nTASKS.append(drill_sleep)\n"
        )
    with (package / "api/__init__.py").open("a") as routers:
        routers.write("\nfrom .drill import router as drill  # noqa: E402\n")
        routers.write("\napi_router.include_router(drill)\n")
    run(project, "uv", "sync", "--quiet")
    return project


def backend_of(project: Path) -> str:
    return "arq" if (project / "src/acme_shop/worker.py").exists() else "background"


class RedisServer:
    """A Redis of the drill's own, persisting to an append-only file so it can be restarted."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = shutil.which("redis-server")
        assert executable, "the drills need redis-server"
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        options += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)]
        self.process = subprocess.Popen([executable, *options], stdout=subprocess.DEVNULL)
        wait_for(lambda: answers(self.url), 10, "redis-server answering")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        yield server
        if server.process and server.process.poll() is None:
            server.stop()


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    with running_smtp_sink() as sink_and_port:
        yield sink_and_port


def drill_env(tmp_path: Path, smtp_port: int, redis: RedisServer | None) -> dict[str, str]:
    extra = {"DRILL_LOG": str(tmp_path / "drill.log"), "ACME_SHOP_ADMIN_EMAIL": "admin@shop.test"}
    if redis is not None:
        extra |= {"ACME_SHOP_REDIS_URL": redis.url, "ACME_SHOP_QUEUE_NAME": "drill"}
    (tmp_path / "drill.log").touch()
    return app_environment(tmp_path, smtp_port, **extra)


def drill_log(tmp_path: Path) -> Counter[tuple[str, str]]:
    """(start|end, job id) -> how often."""
    lines = (tmp_path / "drill.log").read_text().split()
    return Counter(zip(lines[::2], lines[1::2], strict=True))


def start_worker(project: Path, env: dict[str, str], log: Path, *options: str) -> Process:
    return Process(project, env, "arq", "acme_shop.worker.WorkerSettings", *options, log=log)


# --- R1 ---------------------------------------------------------------------------------------


def test_r1_every_failure_is_logged_with_its_request_and_later_tasks_still_run(
    drill_project: Path, smtp_sink: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    sink, smtp_port = smtp_sink
    sink.refused.add(ORDER["email"])  # send_order_confirmation, the first of three, fails
    backend = backend_of(drill_project)
    with tempfile.TemporaryDirectory() as redis_dir:
        redis = RedisServer(Path(redis_dir)) if backend == "arq" else None
        if redis:
            redis.start()
        env = drill_env(tmp_path, smtp_port, redis)
        api, base = start_api(drill_project, env, tmp_path / "api.log")
        worker = start_worker(drill_project, env, tmp_path / "worker.log") if redis else None
        task_logs = worker or api
        try:
            with httpx.Client(base_url=base, timeout=10) as client:
                statuses = Counter(
                    client.post(
                        "/order", json=ORDER, headers={"X-Request-ID": f"r1-{i}"}
                    ).status_code
                    for i in range(100)
                )
            wait_for(
                lambda: len(task_logs.events("task_failed_permanently")) >= 100, 120, "100 failures"
            )
            wait_for(lambda: len(sink.accepted) >= 100, 60, "100 admin emails")
        finally:
            api.stop()
            if worker:
                worker.stop()
            if redis:
                redis.stop()

    failed = task_logs.events("task_failed")
    database = sqlite3.connect(tmp_path / "app.db")
    reserved = database.execute("SELECT reserved FROM stock_levels WHERE sku = 'MUG-1'").fetchone()[
        0
    ]
    recorded = database.execute("SELECT COUNT(DISTINCT request_id) FROM task_failures").fetchone()[
        0
    ]
    print(
        f"\nR1 {backend}: {statuses[201]} orders answered 201; task_failed lines: {len(failed)}, "
        f"distinct request ids: {len({line['request_id'] for line in failed})}; "
        f"failures recorded: {recorded}; admin emails: {len(sink.accepted)}; reserved: {reserved}"
    )
    assert statuses == {201: 100}
    assert len(failed) == 100
    assert {line["request_id"] for line in failed} == {f"r1-{i}" for i in range(100)}
    assert all(line["task"] == "send_order_confirmation" for line in failed)
    assert all("Traceback (most recent call last)" in line["exception"] for line in failed)
    assert recorded == 100
    assert sink.to("admin@shop.test") == len(sink.accepted) == 100  # notify_admin ran for all
    assert reserved == 100 * ORDER["quantity"]  # so did update_inventory
