"""Real processes and a real SMTP server for the tests that run rendered projects."""

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiosmtpd.controller import Controller

from .postgres_server import create_database
from .redis_server import free_port


class SmtpSink:
    """An SMTP server that keeps what it accepts and can refuse, defer or be slow."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.refused: set[str] = set()
        self.defer_next = 0
        self.accepted: list[tuple[list[str], bytes]] = []
        self.accepted_event = threading.Event()

    def to(self, address: str) -> int:
        return sum(address in recipients for recipients, _ in self.accepted)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 Recipient refused"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        if self.defer_next > 0:
            self.defer_next -= 1
            return "451 4.3.0 Try again later"
        self.accepted.append((list(envelope.rcpt_tos), envelope.content))
        self.accepted_event.set()
        return "250 Message accepted"


@contextmanager
def running_smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    sink, port = SmtpSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


class Process:
    """A program of a rendered project's virtualenv, its output in a log file.

    Started directly (not through `uv run`), so that a signal reaches the program itself.
    """

    def __init__(self, project: Path, env: dict[str, str], *command: str, log: Path) -> None:
        self.log = log
        with log.open("w") as output:
            self.popen = subprocess.Popen(
                [str(project / ".venv/bin" / command[0]), *command[1:]],
                cwd=project,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def json_lines(self) -> list[dict[str, Any]]:
        """The JSON lines logged so far; a last line still being written is left for later."""
        return self.json_lines_of(self.log)

    @staticmethod
    def json_lines_of(log: Path) -> list[dict[str, Any]]:
        text = log.read_text()
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.json_lines() if line.get("event") == event]

    def send(self, signum: signal.Signals) -> None:
        self.popen.send_signal(signum)

    def stop(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
        return self.popen.wait(timeout=timeout)


def app_environment(
    tmp_path: Path, smtp_port: int, database_url: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a rendered acme_shop: JSON logs, the database (default: SQLite
    in tmp_path), the SMTP sink."""
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    return env | {
        "ACME_SHOP_LOG_FORMAT": "json",
        "ACME_SHOP_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        "ACME_SHOP_EMAIL_BACKEND": "smtp",
        "ACME_SHOP_SMTP_HOST": "127.0.0.1",
        "ACME_SHOP_SMTP_PORT": str(smtp_port),
        "ACME_SHOP_TASK_RETRY_BACKOFF_SECONDS": "0.05",
        **extra,
    }


def new_database(database: str, tmp_path: Path, postgres_url: str | None) -> str:
    """The URL of an empty database of kind `database` for one test."""
    if database == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    assert postgres_url is not None
    return create_database(postgres_url, f"test_{uuid.uuid4().hex}")


def migrate(project: Path, env: dict[str, str]) -> None:
    """`acme_shop migrate`, as a deploy runs it before starting the processes."""
    command = [str(project / ".venv/bin/acme_shop"), "migrate"]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"migrate failed:\n{done.stdout}\n{done.stderr}"


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of `sql` on the app's database (SQLite or PostgreSQL), committed."""
    if database_url.startswith("sqlite"):
        with closing(sqlite3.connect(database_url.split(":///", 1)[1])) as connection:
            rows = connection.execute(sql).fetchall()
            connection.commit()
            return rows
    with psycopg.connect(database_url.replace("+asyncpg", "", 1)) as connection:
        cursor = connection.execute(sql)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` until it holds; return the seconds it took. Fail after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def start_api(project: Path, env: dict[str, str], log: Path, *options: str) -> tuple[Process, str]:
    """uvicorn serving the project's app factory on a free port; waits until it answers."""
    port = free_port()
    api = Process(
        project, env, "uvicorn", "acme_shop.main:create_app", "--factory",
        "--port", str(port), *options, log=log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert api.popen.poll() is None, f"uvicorn exited:\n{log.read_text()[-3000:]}"
        try:
            httpx.get(f"{base}/health/live", timeout=1)
        except httpx.TransportError:
            return False
        return True

    wait_for(answers, 60, "uvicorn answering")
    return api, base


def wait_until_healthy(base: str, server: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Wait for GET /health/ready to answer 200 (under arq: a worker's heartbeat is in
    Redis too), failing early if the server exits."""

    def healthy() -> bool:
        assert server.poll() is None, "the server exited before it was healthy"
        try:
            return httpx.get(f"{base}/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout, "GET /health/ready answering 200")


@contextmanager
def otlp_collector(received: Path | None = None) -> Iterator[str]:
    """An OTLP/HTTP endpoint on a free port that accepts every export and writes each to a
    file in `received` (keeps nothing without it); yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if received is not None:
                (received / f"{time.monotonic_ns()}.pb").write_bytes(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
