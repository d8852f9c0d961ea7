import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_every_route_is_documented(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    paths = response.json()["paths"]
    assert {"/health/live", "/health/ready", "/events"} <= set(paths)
    assert all(operation.get("responses") for path in paths.values() for operation in path.values())
