"""The generated app served by a real uvicorn: the response does not wait for its tasks."""

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


@pytest.mark.parametrize("variant", ["default"], indirect=True)
def test_register_answers_before_the_welcome_email_is_sent(
    synced_project: Path, slow_sink: tuple[SlowSink, int], tmp_path: Path
) -> None:
    sink, smtp_port = slow_sink
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env |= {
        "ACME_SHOP_LOG_FORMAT": "json",
        "ACME_SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "ACME_SHOP_EMAIL_BACKEND": "smtp",
        "ACME_SHOP_SMTP_HOST": "127.0.0.1",
        "ACME_SHOP_SMTP_PORT": str(smtp_port),
    }
    command = ["uv", "run", "--no-sync", "uvicorn", "acme_shop.main:create_app", "--factory"]
    server = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=synced_project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
