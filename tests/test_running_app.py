"""The generated app served by a real uvicorn: the response does not wait for its tasks."""

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from .redis_server import free_port


class SlowSink:
    """An SMTP server that takes `delay` seconds to accept each message."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted: list[bytes] = []
        self.accepted_event = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        self.accepted.append(envelope.content)
        self.accepted_event.set()
        return "250 Message accepted"


@pytest.fixture
def slow_sink() -> Iterator[tuple[SlowSink, int]]:
    sink, port = SlowSink(delay=1.0), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.mark.parametrize("variant", ["background-examples-py3.11"], indirect=True)
def test_register_answers_before_the_welcome_email_is_sent(
    synced_project: Path, slow_sink: tuple[SlowSink, int], tmp_path: Path
) -> None:
    sink, smtp_port = slow_sink
    port = free_port()
    env = app_environment(tmp_path, smtp_port)
    server = start(synced_project, env, *UVICORN, "--port", str(port))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, server)

        response = httpx.post(
            f"{base}/register",
            json={"email": "ada@example.com", "name": "Ada", "password": "correct horse"},
            timeout=10,
        )
        emails_at_response = len(sink.accepted)

        assert response.status_code == 201
        assert emails_at_response == 0, "the response waited for the email"
        assert sink.accepted_event.wait(timeout=10), "the welcome email never arrived"
        assert b"To: ada@example.com" in sink.accepted[0]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)

    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    request_id = response.headers["X-Request-ID"]
    mine = [line["event"] for line in lines if line.get("request_id") == request_id]
    assert mine.index("request_finished") < mine.index("task_started")
    assert mine[-2:] == ["email_sent", "task_finished"]


UVICORN = ("uvicorn", "acme_shop.main:create_app", "--factory")


def start(project: Path, env: dict[str, str], *command: str) -> subprocess.Popen[str]:
    """Start `uv run <command>` in the project's environment, output captured."""
    return subprocess.Popen(
        ["uv", "run", "--no-sync", *command],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def app_environment(tmp_path: Path, smtp_port: int, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    return env | {
        "ACME_SHOP_LOG_FORMAT": "json",
        "ACME_SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "ACME_SHOP_EMAIL_BACKEND": "smtp",
        "ACME_SHOP_SMTP_HOST": "127.0.0.1",
        "ACME_SHOP_SMTP_PORT": str(smtp_port),
        **extra,
    }


def wait_until_healthy(base: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "uvicorn exited before it was ready"
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("uvicorn did not become healthy within 60 s")


@pytest.mark.parametrize("variant", ["arq-examples-py3.11"], indirect=True)
def test_arq_worker_sends_the_email_and_the_job_completes(
    synced_project: Path, slow_sink: tuple[SlowSink, int], redis_url: str, tmp_path: Path
) -> None:
    sink, smtp_port = slow_sink
    sink.delay = 0.0
    port = free_port()
    env = app_environment(
        tmp_path, smtp_port, ACME_SHOP_REDIS_URL=redis_url, ACME_SHOP_QUEUE_NAME=f"e2e:{port}"
    )
    api = start(synced_project, env, *UVICORN, "--port", str(port))
    worker = start(synced_project, env, "arq", "acme_shop.worker.WorkerSettings")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, api)  # 200 only once the worker's heartbeat is in Redis

        sent = time.monotonic()
        response = httpx.post(
            f"{base}/register",
            json={"email": "ada@example.com", "name": "Ada", "password": "correct horse"},
            timeout=10,
        )
        answered = time.monotonic() - sent
        assert response.status_code == 201
        assert sink.accepted_event.wait(timeout=10), "the welcome email never arrived"
        delivered = time.monotonic() - sent
        [job_id] = response.json()["jobs"]
        for _ in range(100):
            job = httpx.get(f"{base}/jobs/{job_id}", timeout=5).json()
            if job["status"] == "complete":
                break
            time.sleep(0.05)
        assert (job["status"], job["success"]) == ("complete", True)
        print(f"arq: /register answered in {answered:.3f} s, email delivered in {delivered:.3f} s")
    finally:
        worker.terminate()
        api.terminate()
        worker_output, _ = worker.communicate(timeout=30)
        api.communicate(timeout=30)

    request_id = response.headers["X-Request-ID"]
    worker_lines = [json.loads(line) for line in worker_output.splitlines() if line.startswith("{")]
    mine = [line["event"] for line in worker_lines if line.get("request_id") == request_id]
    assert mine == ["task_started", "email_sent", "task_finished"]
