"""The generated app layer by layer, for `python -m bench.layers` (background backend).

Each factory serves POST /noop with one layer more than the one before:
- bare: a FastAPI app whose endpoint returns a small JSON object;
- middleware: the same with the generated `RequestIdMiddleware`;
- app: the generated app (`create_app`: middleware, its routers) and an endpoint
  without dependencies;
- dependencies: + `SettingsDep`, `ResourcesDep`, `LoggerDep` and the route's log line;
- session: + `SessionDep` (a session, no SQL: it commits nothing);
- job_row: + `TasksDep` and an enqueue: the job's row INSERTed and COMMITted, not run;
- shipped: the same, run after the response as the backend runs it (bench_apps.generated).
"""

from collections.abc import Sequence

from acme_shop.deps import LoggerDep, ResourcesDep, SessionDep, SettingsDep, TasksDep
from acme_shop.jobs import queue
from acme_shop.jobs.outbox import Dispatch
from acme_shop.logging import RequestIdMiddleware
from acme_shop.main import create_app
from acme_shop.models import Job
from bench_apps import generated, noop
from fastapi import APIRouter, FastAPI

Answer = dict[str, str]


def bare() -> FastAPI:
    app = FastAPI()

    @app.post("/noop")
    async def endpoint() -> Answer:
        return {"job": "none"}

    return app


def middleware() -> FastAPI:
    app = bare()
    app.add_middleware(RequestIdMiddleware)
    return app


def with_route(router: APIRouter) -> FastAPI:
    app = create_app()
    app.include_router(router)
    return app


def app() -> FastAPI:
    router = APIRouter()

    @router.post("/noop")
    async def endpoint() -> Answer:
        return {"job": "none"}

    return with_route(router)


def dependencies() -> FastAPI:
    router = APIRouter()

    @router.post("/noop")
    async def endpoint(settings: SettingsDep, resources: ResourcesDep, log: LoggerDep) -> Answer:
        log.info("noop_served")
        return {"job": "none"}

    return with_route(router)


def session() -> FastAPI:
    router = APIRouter()

    @router.post("/noop")
    async def endpoint(
        settings: SettingsDep, resources: ResourcesDep, session: SessionDep, log: LoggerDep
    ) -> Answer:
        log.info("noop_served")
        return {"job": "none"}

    return with_route(router)


async def run_nothing(jobs: Sequence[Job]) -> None:
    """A dispatch that runs nothing: the rows stay as their request wrote them."""


async def get_no_dispatch() -> Dispatch:
    return run_nothing


def job_row() -> FastAPI:
    router = APIRouter()

    @router.post("/noop")
    async def endpoint(
        settings: SettingsDep, resources: ResourcesDep, tasks: TasksDep, log: LoggerDep
    ) -> Answer:
        job_id = await tasks.enqueue(noop)
        log.info("noop_enqueued", job_id=job_id)
        return {"job": job_id}

    application = with_route(router)
    application.dependency_overrides[queue.get_dispatch] = get_no_dispatch
    return application


def shipped() -> FastAPI:
    return generated()
