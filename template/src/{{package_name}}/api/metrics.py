"""GET /metrics: the app's metrics, in Prometheus's text format (see `metrics.py`).

Left out of the OpenAPI document: it is for Prometheus, not for the API's clients.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ..deps import ResourcesDep
from ..jobs.queue import check_task_backend
from ..metrics import exposition

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(
    resources: ResourcesDep,
    task_backend: Annotated[dict[str, bool], Depends(check_task_backend)],
) -> Response:
    async with resources.sessions() as session:
        text = await exposition(resources.metrics, session, runner_up=all(task_backend.values()))
    return Response(text, media_type=CONTENT_TYPE_LATEST)
