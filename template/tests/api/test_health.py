import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_health_reports_each_dependency(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    checks = response.json()["checks"]
    assert checks["database"] is True
    healthy = all(checks.values())
    assert response.status_code == (200 if healthy else 503)
    assert response.json()["status"] == ("ok" if healthy else "unavailable")
