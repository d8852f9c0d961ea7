"""The dashboard's pages and actions (see `__init__.py`)."""

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.typing import FilteringBoundLogger

from ..api.failed_tasks import ClearFinishedDep, DispatchDep, rerun, rerun_failed_job
from ..deps import SessionDep, SettingsDep
from ..jobs.cancel import cancel_pending
from ..jobs.dead_letter import retryable_jobs_of, why_not_retryable
from ..jobs.queue import check_task_backend
from ..jobs.runtime import summarize_arguments
from ..logging import HIDDEN, without_secrets
from ..models import JOB_STATUSES, Job, JobStatusName, as_utc
from ..settings import Settings
from ..tasks import TASKS
from .board import Filters, jobs_by_task, list_jobs, overview, totals_of, trace_id_of
from .session import (
    CheckedSessionDep,
    SessionIdDep,
    csrf_of,
    end_session,
    start_session,
    token_matches,
)


def moment(value: datetime | None) -> str:
    """A stored time, in UTC to the second."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def duration(seconds: float) -> str:
    """`seconds` as a person says it: 45 s, 12 min, 3 h 20 min, 2 days."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds / 86400:.1f} days"


templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters.update(moment=moment, duration=duration)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Everything a page loads comes from this app: no inline script or style, no CDN."""

NOTICES = {
    "rerun": "The job was put back to pending and sent to run again.",
    "cancelled": "The job was cancelled: it will not run.",
    "rerun_task": "The task's failed jobs were put back to pending and sent to run again.",
}

router = APIRouter(prefix="/admin", include_in_schema=False)

TaskBackendDep = Annotated[dict[str, bool], Depends(check_task_backend)]


def page(request: Request, name: str, context: dict[str, Any], code: int = 200) -> Response:
    """The template `name` rendered, with the headers every page of the dashboard has."""
    values = {"app_name": request.state.settings.app_name, **context}
    response = templates.TemplateResponse(request, name, values, status_code=code)
    return secured(response)


def secured(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def redirect(url: str) -> Response:
    return secured(RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER))


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def actor(request: Request, session_id: str) -> str:
    """Who did it, for the log: the dashboard session and the client's address."""
    return f"session {session_id[:8]} from {client_of(request)}"


def audit(request: Request, session_id: str, action: str, **what: Any) -> None:
    log: FilteringBoundLogger = structlog.get_logger()
    log.info("admin_action", action=action, by=actor(request, session_id), **what)


# --- login -------------------------------------------------------------------------


def login_context(request: Request, error: str | None) -> dict[str, Any]:
    """`plain_http`: the page came over HTTP from a host a browser will not keep a
    `Secure` cookie for (it does for localhost), so the login would seem to do nothing."""
    plain_http = request.url.scheme == "http" and request.url.hostname != "localhost"
    return {"error": error, "plain_http": plain_http}


@router.get("/login")
async def login_form(request: Request) -> Response:
    return page(request, "login.html", login_context(request, None))


@router.post("/login")
async def log_in(
    request: Request, settings: SettingsDep, token: Annotated[str, Form(max_length=1000)] = ""
) -> Response:
    log: FilteringBoundLogger = structlog.get_logger()
    client = client_of(request)
    if not token_matches(settings, token):
        log.warning("admin_login_failed", client=client)
        error = "That is not the admin token."
        context = login_context(request, error)
        return page(request, "login.html", context, status.HTTP_401_UNAUTHORIZED)
    response = redirect("/admin/")
    start_session(response, settings)
    log.info("admin_logged_in", client=client)
    return response


@router.post("/logout")
async def log_out(request: Request, session_id: CheckedSessionDep) -> Response:
    audit(request, session_id, "logout")
    response = redirect("/admin/login")
    end_session(response)
    return response


# --- pages -------------------------------------------------------------------------


def context(request: Request, session_id: str, settings: Settings, **values: Any) -> dict[str, Any]:
    notice = NOTICES.get(request.query_params.get("done", ""))
    return {"csrf_token": csrf_of(settings, session_id), "notice": notice, **values}


@router.get("/")
async def overview_page(
    request: Request,
    session_id: SessionIdDep,
    settings: SettingsDep,
    session: SessionDep,
    task_backend: TaskBackendDep,
) -> Response:
    board = await overview(session)
    down = [check for check, up in task_backend.items() if not up]
    values = {"board": board, "statuses": JOB_STATUSES, "runner_down": down}
    return page(request, "overview.html", context(request, session_id, settings, **values))


@router.get("/counts")
async def counts(_: SessionIdDep, session: SessionDep) -> Response:
    """Jobs by status, for the overview's refresh (static/admin.js)."""
    return secured(JSONResponse(totals_of(await jobs_by_task(session))))


@router.get("/jobs")
async def jobs_page(
    request: Request,
    session_id: SessionIdDep,
    settings: SettingsDep,
    session: SessionDep,
    status_: Annotated[JobStatusName | None, Query(alias="status")] = None,
    task: Annotated[str | None, Query(max_length=200)] = None,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    filters = Filters(status_ or None, task or None, request_id or None)
    try:
        found = await list_jobs(session, filters, cursor)
    except ValueError as problem:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(problem)) from None
    values = {"filters": filters, "found": found, "statuses": JOB_STATUSES}
    return page(request, "jobs.html", context(request, session_id, settings, **values))


async def job_or_404(session: AsyncSession, job_id: str) -> Job:
    job: Job | None = await session.get(Job, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}.")
    return job


def arguments_of(job: Job) -> str:
    """The job's arguments as the logs show them: the values of secrets hidden."""
    if job.arguments is None:
        return "(not kept: the job failed before jobs kept their arguments)"
    args, kwargs = job.arguments.get("args", []), job.arguments.get("kwargs", {})
    task = next((task for task in TASKS if task.name == job.task), None)
    if task is None:  # no signature to say which positional argument is a secret
        hidden = ", ".join([HIDDEN] * len(args))
        return f"{hidden} {without_secrets(kwargs)} (task not registered here)"
    return summarize_arguments(task, tuple(args), kwargs)


@router.get("/jobs/{job_id}")
async def job_page(
    request: Request,
    job_id: str,
    session_id: SessionIdDep,
    settings: SettingsDep,
    session: SessionDep,
) -> Response:
    job = await job_or_404(session, job_id)
    values = {
        "job": job,
        "arguments": arguments_of(job),
        "trace_id": trace_id_of(job),
        "rerunnable": why_not_retryable(job) is None,
    }
    return page(request, "job.html", context(request, session_id, settings, **values))


Action = Literal["rerun", "cancel"]


@router.get("/jobs/{job_id}/{action}")
async def confirm_job_action(
    request: Request,
    job_id: str,
    action: Action,
    session_id: SessionIdDep,
    settings: SettingsDep,
    session: SessionDep,
) -> Response:
    job = await job_or_404(session, job_id)
    values = {"job": job, "action": action, "target": f"/admin/jobs/{job.id}/{action}"}
    return page(request, "confirm.html", context(request, session_id, settings, **values))


@router.post("/jobs/{job_id}/rerun")
async def rerun_job(
    request: Request,
    job_id: str,
    session_id: CheckedSessionDep,
    session: SessionDep,
    clear_finished: ClearFinishedDep,
    dispatch: DispatchDep,
) -> Response:
    job = await rerun_failed_job(session, job_id, clear_finished, dispatch)
    audit(request, session_id, "rerun", task=job.task, job_id=job.id)
    return redirect(f"/admin/jobs/{job.id}?done=rerun")


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(
    request: Request, job_id: str, session_id: CheckedSessionDep, session: SessionDep
) -> Response:
    job = await job_or_404(session, job_id)
    cancelled = await cancel_pending(session, job.id, by=actor(request, session_id))
    if cancelled is None:
        detail = f"Job {job_id} is {job.status}: only a pending job can be cancelled."
        raise HTTPException(status.HTTP_409_CONFLICT, detail)
    audit(request, session_id, "cancel", task=job.task, job_id=job.id)
    return redirect(f"/admin/jobs/{job.id}?done=cancelled")


@router.get("/tasks/{task}/rerun")
async def confirm_task_rerun(
    request: Request,
    task: str,
    session_id: SessionIdDep,
    settings: SettingsDep,
    session: SessionDep,
) -> Response:
    job_ids, skipped = await retryable_jobs_of(session, task)
    values = {
        "task": task,
        "count": len(job_ids),
        "skipped": skipped,
        "action": "rerun_task",
        "target": f"/admin/tasks/{task}/rerun",
    }
    return page(request, "confirm.html", context(request, session_id, settings, **values))


@router.post("/tasks/{task}/rerun")
async def rerun_task(
    request: Request,
    task: str,
    session_id: CheckedSessionDep,
    session: SessionDep,
    clear_finished: ClearFinishedDep,
    dispatch: DispatchDep,
) -> Response:
    job_ids, _ = await retryable_jobs_of(session, task)
    reset = await rerun(session, job_ids, clear_finished, dispatch)
    audit(request, session_id, "rerun_task", task=task, jobs=len(reset))
    query = urlencode({"task": task, "status": "pending", "done": "rerun_task"})
    return redirect(f"/admin/jobs?{query}")
