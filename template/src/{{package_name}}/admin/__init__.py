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
from fastapi.staticfiles import StaticFiles

from ..settings import Settings
from .routes import redirect, router
from .session import LoginRequiredError


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard from `app` when the admin token is set."""
    if settings.admin_token is None:
        return
    app.include_router(router)
    static = StaticFiles(directory=Path(__file__).parent / "static")
    app.mount("/admin/static", static, name="admin-static")
    app.add_exception_handler(LoginRequiredError, to_login)


async def to_login(request: Request, exc: Exception) -> Response:
    return redirect("/admin/login")
