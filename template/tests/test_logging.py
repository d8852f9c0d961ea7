import httpx
import pytest
from fastapi import FastAPI

from .conftest import JobRunner, LogReader

pytestmark = pytest.mark.anyio


async def test_request_id_is_returned_and_logged(
    client: httpx.AsyncClient, logs: LogReader
) -> None:
    response = await client.post(
        "/events", json={"name": "signup"}, headers={"X-Request-ID": "abc-123"}
    )

    assert response.headers["X-Request-ID"] == "abc-123"
    finished = [line for line in logs() if line["event"] == "request_finished"]
    assert finished[-1]["request_id"] == "abc-123"
    assert finished[-1]["status"] == 202


@pytest.mark.parametrize("incoming", [None, "", "has spaces", "x" * 200, "<script>"])
async def test_unusable_request_id_is_replaced(
    client: httpx.AsyncClient, incoming: str | None
) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}

    response = await client.get("/health/live", headers=headers)

    returned = response.headers["X-Request-ID"]
    assert returned != incoming
    assert len(returned) == 32


async def test_response_is_logged_before_its_tasks_run(
    client: httpx.AsyncClient, run_jobs: JobRunner, logs: LogReader
) -> None:
    """The request's lines and its task's lines (from the API process or a worker) are
    in one capture: the request must be finished before its task starts."""
    response = await client.post(
        "/events", json={"name": "signup"}, headers={"X-Request-ID": "order-check"}
    )
    await run_jobs()

    [job_id] = response.json()["jobs"]
    mine = [line for line in logs() if line.get("request_id") == "order-check"]
    events = [line["event"] for line in mine]
    [started] = [line for line in mine if line["event"] == "task_started"]
    assert started["job_id"] == job_id
    assert events.index("request_finished") < events.index("task_started"), events


async def test_an_unhandled_error_answers_500_with_the_id_logged_once(
    app: FastAPI, client: httpx.AsyncClient, logs: LogReader
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/broken", broken)

    response = await client.get("/broken", headers={"X-Request-ID": "req-500"})

    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "req-500"
    mine = [line for line in logs() if line.get("request_id") == "req-500"]
    finished = [line for line in mine if line["event"] == "request_finished"]
    assert [line["status"] for line in finished] == [500]
    [failed] = [line for line in mine if line["event"] == "request_failed"]
    assert "RuntimeError: boom" in failed["exception"]
