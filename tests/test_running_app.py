"""Rendered projects served by real processes: the response does not wait for its tasks."""

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import VARIANTS, run
from .support import (
    Process,
    SmtpSink,
    app_environment,
    free_port,
    migrate,
    new_database,
    otlp_collector,
    running_smtp_sink,
    start_api,
    wait_for,
    wait_until_healthy,
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
    "variant", ["arq-examples-sqlite-py3.11", "arq-examples-postgresql-otel-py3.11"], indirect=True
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
    worker = start_worker(synced_project, env, tmp_path / "worker.log")
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
        assert job["status"] == "succeeded"
        assert "error" not in job, "a job's errors are the admin's (the dead letter)"
        print(f"arq: welcome email delivered {delivered:.3f} s after /register answered")
    finally:
        worker.stop()
        api.stop()

    request_id = response.headers["X-Request-ID"]
    mine = [line["event"] for line in worker.json_lines() if line.get("request_id") == request_id]
    assert mine == ["task_started", "email_sent", "task_finished"]
    # One format for every line, arq's and uvicorn's included; the access line has the id.
    assert_every_line_is_json(worker.log)
    assert_every_line_is_json(api.log)
    access = [line for line in api.json_lines() if line.get("logger") == "uvicorn.access"]
    assert request_id in [line.get("request_id") for line in access]
    assert any(line.get("logger") == "arq.worker" for line in worker.json_lines())


def start_worker(project: Path, env: dict[str, str], log: Path) -> Process:
    """The worker as the README starts it, arq's own lines in the app's format."""
    return Process(
        project, env, "arq", "acme_shop.worker.WorkerSettings",
        "--custom-log-dict", "acme_shop.worker.LOG_CONFIG", log=log,
    )  # fmt: skip


def assert_every_line_is_json(log: Path) -> None:
    for line in log.read_text().splitlines():
        try:
            assert isinstance(json.loads(line), dict)
        except (json.JSONDecodeError, AssertionError):
            pytest.fail(f"{log.name}: a line is not one JSON object: {line!r}")


# Decodes the exports with the project's own protobuf classes (the exporter brings them).
DECODE_SPANS = """
import json, pathlib, sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
spans = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.pb")):
    export = ExportTraceServiceRequest.FromString(path.read_bytes())
    for resource_spans in export.resource_spans:
        service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append({
                    "service": service["service.name"],
                    "name": span.name,
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "attributes": {a.key: a.value.string_value or a.value.int_value
                                   for a in span.attributes},
                    "error": span.status.code == 2,
                })
print(json.dumps(spans))
"""


@pytest.mark.parametrize("variant", ["arq-examples-postgresql-otel-py3.11"], indirect=True)
def test_one_trace_crosses_the_api_and_the_worker(
    synced_project: Path,
    smtp_sink: tuple[SmtpSink, int],
    redis_url: str,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    """The real processes export over OTLP: POST /order gives one trace, the request's span
    in the API and its three tasks' spans in the worker, their SQL statements under them."""
    _, smtp_port = smtp_sink
    received = tmp_path / "otlp"
    received.mkdir()
    with otlp_collector(received) as endpoint:
        env = app_environment(
            tmp_path,
            smtp_port,
            new_database("postgresql", tmp_path, postgres_url),
            ACME_SHOP_REDIS_URL=redis_url,
            ACME_SHOP_QUEUE_NAME=f"otel:{tmp_path.name}",
            OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
            OTEL_BSP_SCHEDULE_DELAY="100",  # export every 0.1 s, not every 5 s
        )
        migrate(synced_project, env)
        worker = start_worker(synced_project, env, tmp_path / "worker.log")
        api, base = start_api(synced_project, env, tmp_path / "api.log")
        try:
            order = {"email": "bob@example.com", "sku": "MUG-1", "quantity": 1}
            response = httpx.post(f"{base}/order", json=order, timeout=10)
            assert response.status_code == 201
            for job_id in response.json()["jobs"]:
                wait_for(
                    lambda job_id=job_id: (
                        httpx.get(f"{base}/jobs/{job_id}").json()["status"] == "succeeded"
                    ),
                    20,
                    "job",
                )
        finally:
            worker.stop()
            api.stop()
        decoded = run(
            synced_project, "uv", "run", "--no-sync", "python", "-c", DECODE_SPANS, str(received)
        )

    spans = json.loads(decoded.stdout)
    request_id = response.headers["X-Request-ID"]
    [request] = [s for s in spans if s["attributes"].get("request_id") == request_id
                 and s["service"] == "acme-shop"]  # fmt: skip
    tasks = [s for s in spans if s["name"].startswith("task ")]
    assert {s["name"] for s in tasks} == {
        "task update_inventory", "task send_order_confirmation", "task notify_admin"
    }  # fmt: skip
    for task in tasks:
        assert task["service"] == "acme-shop-worker"
        assert task["trace_id"] == request["trace_id"]
        assert task["parent_span_id"] == request["span_id"]
        assert task["attributes"]["request_id"] == request_id
        assert not task["error"]
    task_ids = {task["span_id"] for task in tasks}
    sql = [s for s in spans if s["parent_span_id"] in task_ids and "db.system" in str(s)]
    assert sql, "no SQL statement span under the task spans"
    assert_every_line_is_json(worker.log)


def run_it_commands(project: Path) -> list[str]:
    """The commands of the generated README's "Run it" block, comments left out."""
    section = (project / "README.md").read_text().split("\n## Run it\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize(
    "variant", ["background-examples-sqlite-py3.11", "arq-examples-sqlite-py3.11"], indirect=True
)
def test_the_generated_readme_s_run_it_commands_work_in_their_order(
    synced_project: Path, variant: str, redis_url: str, tmp_path: Path
) -> None:
    """As a new user runs them: the database where the settings put it by default (the
    project's var/), the port uvicorn picks unless told (given here, to run beside other
    tests), and under arq the Redis the tests have (the README says to set it in .env)."""
    commands = run_it_commands(synced_project)
    migrate_command, api_command, *worker_command, test_command = commands
    assert migrate_command == "uv run acme_shop migrate"
    assert api_command == "uv run uvicorn acme_shop.main:create_app --factory --reload"
    assert test_command == "uv run pytest"  # test_generated_tests_pass runs it
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env |= {"ACME_SHOP_LOG_FORMAT": "json", "ACME_SHOP_QUEUE_NAME": f"readme:{tmp_path.name}"}
    env |= {"ACME_SHOP_REDIS_URL": redis_url}
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start(command: str, log: str) -> subprocess.Popen[bytes]:
        with (tmp_path / log).open("w") as output:
            process = subprocess.Popen(
                command, shell=True, cwd=synced_project, env=env, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        processes.append(process)
        return process

    try:
        migrated = subprocess.run(
            migrate_command, shell=True, cwd=synced_project, env=env, capture_output=True
        )
        assert migrated.returncode == 0, migrated.stderr
        api = start(f"{api_command} --port {port}", "api.log")
        if worker_command:
            assert worker_command == [
                "uv run arq acme_shop.worker.WorkerSettings"
                " --custom-log-dict acme_shop.worker.LOG_CONFIG"
            ]
            start(worker_command[0], "worker.log")
        base = f"http://127.0.0.1:{port}"
        wait_until_healthy(base, api, timeout=90)
        response = httpx.post(f"{base}/events", json={"name": "signup"}, timeout=10)
        assert response.status_code == 202
        [job_id] = response.json()["jobs"]

        def job_succeeded() -> bool:
            job = httpx.get(f"{base}/jobs/{job_id}", timeout=10).json()
            return bool(job["status"] == "succeeded")

        wait_for(job_succeeded, 30, "the event's job succeeding")
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        shutil.rmtree(synced_project / "var", ignore_errors=True)
