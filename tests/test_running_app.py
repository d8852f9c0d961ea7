"""Rendered projects served by real processes: the response does not wait for its tasks."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import VARIANTS
from .support import (
    Process,
    SmtpSink,
    app_environment,
    migrate,
    new_database,
    running_smtp_sink,
    start_api,
    wait_for,
)

REGISTRATION = {"email": "ada@example.com", "name": "Ada", "password": "correct horse"}


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    with running_smtp_sink() as sink_and_port:
        yield sink_and_port


@pytest.mark.parametrize("variant", ["background-examples-sqlite-py3.11"], indirect=True)
def test_register_answers_before_the_welcome_email_is_sent(
    synced_project: Path, smtp_sink: tuple[SmtpSink, int], tmp_path: Path
) -> None:
    sink, smtp_port = smtp_sink
    sink.delay = 1.0  # the server takes a second to accept the email
    env = app_environment(tmp_path, smtp_port)
    migrate(synced_project, env)
    api, base = start_api(synced_project, env, tmp_path / "api.log")
    try:
        response = httpx.post(f"{base}/register", json=REGISTRATION, timeout=10)
        emails_at_response = len(sink.accepted)

        assert response.status_code == 201
        assert emails_at_response == 0, "the response waited for the email"
        assert sink.accepted_event.wait(timeout=10), "the welcome email never arrived"
        assert sink.to("ada@example.com") == 1
    finally:
        api.stop()

    request_id = response.headers["X-Request-ID"]
    mine = [line["event"] for line in api.json_lines() if line.get("request_id") == request_id]
    assert mine.index("request_finished") < mine.index("task_started")
    assert mine[-2:] == ["email_sent", "task_finished"]


@pytest.mark.parametrize(
    "variant", ["arq-examples-sqlite-py3.11", "arq-examples-postgresql-py3.11"], indirect=True
)
def test_arq_worker_sends_the_email_and_the_job_completes(
    synced_project: Path,
    variant: str,
    smtp_sink: tuple[SmtpSink, int],
    redis_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    sink, smtp_port = smtp_sink
    database = VARIANTS[variant]["database"]
    postgres = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    env = app_environment(
        tmp_path,
        smtp_port,
        new_database(database, tmp_path, postgres),
        ACME_SHOP_REDIS_URL=redis_url,
        ACME_SHOP_QUEUE_NAME=f"e2e:{tmp_path.name}",
    )
    migrate(synced_project, env)
    worker = Process(
        synced_project, env, "arq", "acme_shop.worker.WorkerSettings", log=tmp_path / "worker.log"
    )
    api, base = start_api(synced_project, env, tmp_path / "api.log")
    try:
        ready = f"{base}/health/ready"
        wait_for(lambda: httpx.get(ready).status_code == 200, 30, "worker heartbeat")

        response = httpx.post(f"{base}/register", json=REGISTRATION, timeout=10)
        assert response.status_code == 201
        delivered = wait_for(lambda: sink.to("ada@example.com") == 1, 10, "welcome email")
        [job_id] = response.json()["jobs"]
        wait_for(
            lambda: httpx.get(f"{base}/jobs/{job_id}").json()["status"] == "succeeded", 10, "job"
        )
        job = httpx.get(f"{base}/jobs/{job_id}").json()
        assert (job["status"], job["tries"], job["error"]) == ("succeeded", 1, None)
        print(f"arq: welcome email delivered {delivered:.3f} s after /register answered")
    finally:
        worker.stop()
        api.stop()

    request_id = response.headers["X-Request-ID"]
    mine = [line["event"] for line in worker.json_lines() if line.get("request_id") == request_id]
    assert mine == ["task_started", "email_sent", "task_finished"]
