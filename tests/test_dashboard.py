"""The jobs dashboard of a running project, in a real browser: uvicorn, the arq worker,
Redis and PostgreSQL as processes, headless Chromium driven by Playwright.

An operator logs in, sees a welcome email that failed for good, opens it, re-runs it and
sees it succeed; cancels a job queued while the worker was down, which the worker then
refuses to run; logs out, and the dashboard is closed to a client without the cookie.
The screenshots of the overview and of the job's page are the README's
(`SCREENSHOTS=docs` writes them there).
"""

import os
import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .support import (
    app_environment,
    migrate,
    new_database,
    query,
    running_smtp_sink,
    start_api,
    wait_for,
)
from .test_running_app import start_worker

TOKEN = "dashboard-drill-token-5e2a"
USER = {"email": "ada@example.com", "name": "Ada", "password": "correct horse"}


def chromium() -> str:
    found = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if not found:
        pytest.fail("No Chromium: apt-get install chromium (.ci/run does), or set CHROMIUM_PATH")
    return found


def log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/admin/")
    expect(page).to_have_url(f"{base}/admin/login")
    page.get_by_label("Admin token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


@pytest.mark.parametrize("variant", ["arq-examples-postgresql-otel-py3.11"], indirect=True)
def test_an_operator_reruns_a_failed_email_and_cancels_a_queued_job(
    synced_project: Path, redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("SCREENSHOTS", tmp_path))
    with running_smtp_sink() as (sink, smtp_port):
        sink.defer_next = 4  # every try of the welcome email is deferred: it fails for good
        env = app_environment(
            tmp_path,
            smtp_port,
            new_database("postgresql", tmp_path, postgres_url),
            ACME_SHOP_REDIS_URL=redis_url,
            ACME_SHOP_QUEUE_NAME=f"dashboard:{tmp_path.name}",
            ACME_SHOP_ADMIN_TOKEN=TOKEN,
        )
        database = env["ACME_SHOP_DATABASE_URL"]
        migrate(synced_project, env)
        worker = start_worker(synced_project, env, tmp_path / "worker.log")
        api, base = start_api(synced_project, env, tmp_path / "api.log")
        base = base.replace("127.0.0.1", "localhost")  # a Secure cookie over plain HTTP
        try:
            [email_job] = httpx.post(f"{base}/register", json=USER, timeout=10).json()["jobs"]
            failed = f"SELECT status FROM jobs WHERE id = '{email_job}'"
            wait_for(lambda: query(database, failed) == [("failed",)], 60, "the email's failure")

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium())
                page = browser.new_page(viewport={"width": 1200, "height": 700})
                log_in(page, base)
                expect(page.locator('[data-count="failed"]')).to_have_text("1")
                page.screenshot(path=shots / "dashboard-overview.png", full_page=True)
                page.get_by_role("link", name="Failed", exact=True).click()
                page.get_by_role("link", name=email_job[:12]).click()
                error = "TransientEmailError: mail server said 451: 4.3.0 Try again later"
                expect(page.get_by_text(error, exact=True)).to_be_visible()
                page.screenshot(path=shots / "dashboard-job.png", full_page=True)
                page.get_by_role("link", name="Re-run this job").click()
                page.get_by_role("button", name="Re-run it").click()
                expect(page.get_by_role("status")).to_contain_text("sent to run again")
                wait_for(lambda: sink.to(USER["email"]) == 1, 30, "the re-run's email")
                # The row says so once the worker has recorded the try, just after the email.
                wait_for(lambda: query(database, failed) == [("succeeded",)], 30, "the record")
                page.reload()
                heading = page.get_by_role("heading", name="send_welcome_email succeeded")
                expect(heading).to_be_visible()

                worker.stop()
                event = httpx.post(f"{base}/events", json={"name": "signup"}, timeout=10)
                [event_job] = event.json()["jobs"]
                page.goto(f"{base}/admin/jobs/{event_job}")
                page.get_by_role("link", name="Cancel this job").click()
                page.get_by_role("button", name="Cancel it").click()
                expect(page.get_by_role("heading", name="process_event cancelled")).to_be_visible()
                page.get_by_role("button", name="Log out").click()
                expect(page).to_have_url(f"{base}/admin/login")
                page.goto(f"{base}/admin/jobs")
                expect(page).to_have_url(f"{base}/admin/login")
                browser.close()

            worker = start_worker(synced_project, env, tmp_path / "worker-2.log")
            skipped = lambda: any(  # noqa: E731
                line.get("job_id") == event_job for line in worker.events("job_skipped")
            )
            wait_for(skipped, 30, "the restarted worker to refuse the cancelled job")
            anonymous = httpx.get(f"{base}/admin/", timeout=10)
        finally:
            worker.stop()
            api.stop()

    assert anonymous.status_code == 303
    assert query(database, f"SELECT status FROM jobs WHERE id = '{event_job}'") == [("cancelled",)]
    assert query(database, "SELECT processed_at FROM events") == [(None,)]
    actions = list(api.events("admin_action"))
    assert [(a["action"], a.get("job_id")) for a in actions] == [
        ("rerun", email_job),
        ("cancel", event_job),
        ("logout", None),
    ]
    assert all(TOKEN not in line for line in (tmp_path / "api.log").read_text().splitlines())
