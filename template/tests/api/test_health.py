import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_health_reports_each_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["checks"]["database"] is True
