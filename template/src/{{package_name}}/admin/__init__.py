"""The jobs dashboard, under /admin/: what the `jobs` table says, for an operator.

- `/admin/`: jobs by status and by task, how long the oldest job owed has waited, the
  last hour's runs and failures, whether a runner is alive.
- `/admin/jobs`: the jobs, newest first, filtered by status, task or request id.
- `/admin/jobs/{id}`: one job: tries, interruptions, times, its request (a link to all
  the jobs of that request), its trace, the last error and traceback, its arguments with
  the values of secrets hidden as the logs hide them.
- Actions, each confirmed on a page of its own, then a POST with the session's CSRF
  token, each logged (`admin_action`) with who and what: re-run a failed job, re-run
  every failed job of a task, cancel a pending job.

It is on only when `admin_token` is set (otherwise every path under /admin/ is a 404),
and the token is its password (`session.py`). Pages are rendered on the server and work
without JavaScript; everything they load is served from here (`static/`), which the
Content-Security-Policy holds them to.
"""

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from ..settings import Settings
from .routes import page, redirect, router
from .session import LoginRequiredError


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard from `app` when the admin token is set."""
    if settings.admin_token is None:
        return
    app.include_router(router)
    static = StaticFiles(directory=Path(__file__).parent / "static")
    app.mount("/admin/static", static, name="admin-static")
    app.add_exception_handler(LoginRequiredError, to_login)
    app.add_exception_handler(HTTPException, error_page)


async def to_login(request: Request, exc: Exception) -> Response:
    return redirect("/admin/login")


async def error_page(request: Request, exc: Exception) -> Response:
    """A refusal under /admin/ as a page a person reads (409: someone else acted first);
    elsewhere FastAPI's JSON, as before."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/admin/"):
        return await http_exception_handler(request, exc)
    response = page(request, "error.html", {"detail": exc.detail}, exc.status_code)
    response.headers.update(exc.headers or {})  # Retry-After of a 503
    return response
