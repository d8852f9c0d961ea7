"""The OpenAPI document tells the truth: what it promises, the API accepts."""

import re

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_every_route_is_documented(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    paths = response.json()["paths"]
    assert {"/health/live", "/health/ready", "/events"} <= set(paths)
    assert all(operation.get("responses") for path in paths.values() for operation in path.values())


@pytest.mark.parametrize(
    "key",
    ["a", "0b3f8c1e-6d2a-4f7e-9c1b-2e5d8a7f4c3b", '"quoted"', "x" * 255, "x" * 256, "",
     "with space", "é", 'in"side', "back\\slash", '""'],
)  # fmt: skip
async def test_the_idempotency_key_s_documented_pattern_is_the_one_enforced(
    client: httpx.AsyncClient, key: str
) -> None:
    document = (await client.get("/openapi.json")).json()
    parameters = document["paths"]["/events"]["post"]["parameters"]
    [schema] = [p["schema"] for p in parameters if p["name"] == "Idempotency-Key"]

    response = await client.post(
        "/events", json={"name": "signup"}, headers=[(b"Idempotency-Key", key.encode())]
    )

    documented = bool(re.fullmatch(schema["pattern"], key))
    documented = documented and schema["minLength"] <= len(key) <= schema["maxLength"]
    assert documented == (response.status_code != 422), (key, response.text)


async def test_a_method_a_route_lacks_is_answered_by_that_route(client: httpx.AsyncClient) -> None:
    # `retry` matches `/tasks/failed/{job_id}` too, whose GET answered "Allow: GET".
    response = await client.options("/tasks/failed/retry")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
