"""`copier update` across template releases and across backends keeps the user's edits."""

import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import copier
import httpx
import pytest
import yaml

from .conftest import TEMPLATE, assert_hygienic, project_files, run, run_gates
from .redis_server import free_port
from .support import (
    Process,
    app_environment,
    migrate,
    new_database,
    query,
    running_smtp_sink,
    start_api,
    wait_for,
)

PACKAGE = Path("src/acme_shop")
USER = {"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}
CREDENTIALS = {"email": USER["email"], "password": USER["password"]}
ORDER = {"email": "bob@example.com", "sku": "A-1", "quantity": 2}

# A task and the route that schedules it, added as the README's "Add a task" says: modules
# of the user's own, and no line in any file the template renders.
USER_FILES = {
    PACKAGE / "tasks/reports.py": '''"""Daily reports: a task the user added."""

from ..jobs import TaskContext, task


@task()
async def send_report(ctx: TaskContext, kind: str) -> None:
    ctx.log.info("report_sent", kind=kind)
''',
    PACKAGE / "api/reports.py": '''"""POST /reports/{kind}: a route the user added."""

from typing import Literal

from fastapi import APIRouter

from ..deps import TasksDep
from ..tasks.reports import send_report

router = APIRouter(tags=["reports"])


@router.post("/reports/{kind}", status_code=202)
async def request_report(kind: Literal["daily", "weekly"], tasks: TasksDep) -> dict[str, str]:
    return {"job": await tasks.enqueue(send_report, kind)}
''',
    Path("tests/tasks/test_reports.py"): """import pytest

from acme_shop.tasks.reports import send_report

from ..conftest import LogReader
from ..stubs.tasks import TaskRunner

pytestmark = pytest.mark.anyio


async def test_send_report_logs_its_kind(run_task_now: TaskRunner, logs: LogReader) -> None:
    await run_task_now(send_report, "weekly")

    assert [line["kind"] for line in logs() if line["event"] == "report_sent"] == ["weekly"]
""",
    Path("tests/api/test_reports.py"): """import httpx
import pytest

from ..conftest import JobRunner, LogReader

pytestmark = pytest.mark.anyio


async def test_a_report_is_sent_after_the_response(
    client: httpx.AsyncClient, run_jobs: JobRunner, logs: LogReader
) -> None:
    response = await client.post("/reports/daily")
    await run_jobs()

    assert response.status_code == 202
    assert [line["kind"] for line in logs() if line["event"] == "report_sent"] == ["daily"]
""",
}

RELEASE_TEST = """from {{ package_name }}.settings import Settings
from {{ package_name }}.tasks import TASKS


def test_logs_are_for_reading_by_default() -> None:
    assert Settings(_env_file=None).log_format == "console"


def test_the_release_s_task_and_the_user_s_are_both_registered() -> None:
    assert {"record_audit", "send_report"} <= {task.name for task in TASKS}
"""

# What release 1.1.0 adds beside the user's additions: a task and a route of its own, and a
# change to both files that gather them.
RELEASE_FILES = {
    "tasks/audit.py": '''"""Audit entries (since 1.1.0)."""

from ..jobs import TaskContext, task


@task()
async def record_audit(ctx: TaskContext, entry: str) -> None:
    ctx.log.info("audit_recorded", entry=entry)
''',
    "api/audit.py": '''"""GET /audit/status (since 1.1.0)."""

from fastapi import APIRouter

router = APIRouter(tags=["audit"])


@router.get("/audit/status")
async def audit_status() -> dict[str, str]:
    return {"audit": "on"}
''',
}


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    done = subprocess.run(
        ["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """This template (working tree) in a git repo of its own, released as 1.0.0."""
    repo = tmp_path / "template-repo"
    repo.mkdir()
    shutil.copy(TEMPLATE / "copier.yml", repo)
    shutil.copytree(TEMPLATE / "template", repo / "template")
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "1.0.0")
    git(repo, "tag", "1.0.0")
    return repo


@pytest.fixture(params=["sqlite"])
def database(request: pytest.FixtureRequest) -> str:
    """The project's database answer; a test parametrizes it to run on PostgreSQL too."""
    return str(request.param)


@pytest.fixture
def user_project(template_repo: Path, database: str, tmp_path: Path) -> Path:
    """A project generated from 1.0.0, committed, then edited and committed by its user."""
    project = tmp_path / "acme-shop"
    data = {} if database == "sqlite" else {"database": database}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(template_repo), project, vcs_ref="1.0.0", data=data, defaults=True, quiet=True
        )
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "generated")

    for name, text in USER_FILES.items():
        (project / name).write_text(text)
    edit(
        project / PACKAGE / "tasks/events.py",
        'ctx.log.info("event_processed", event_id=event_id, name=event.name)',
        'ctx.log.info("event_processed", event_id=event_id, name=event.name, source="api")',
    )
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "user edits")
    return project


def update(project: Path, **data: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_update(project, data=data, defaults=True, overwrite=True, quiet=True)
    assert_hygienic(project)
    assert "<<<<<<<" not in git(project, "diff")


def project_tree(project: Path) -> dict[Path, bytes]:
    """Every file of the project but uv.lock (the gates' `uv sync` writes it; relocking after
    a switch is test_the_documented_relock_makes_a_locked_sync_pass_after_a_backend_switch's)."""
    return {
        name: (project / name).read_bytes()
        for name in project_files(project)
        if name != Path("uv.lock")
    }


def assert_user_edits_kept(project: Path) -> None:
    for name, text in USER_FILES.items():
        assert (project / name).read_text() == text
    assert 'source="api"' in (project / PACKAGE / "tasks/events.py").read_text()


def test_a_release_merges_with_user_edits_and_additions(
    template_repo: Path, user_project: Path
) -> None:
    (template_repo / "template/tests/test_release.py.jinja").write_text(RELEASE_TEST)
    package = template_repo / "template/src/{{package_name}}"
    for name, text in RELEASE_FILES.items():
        (package / name).write_text(text)
    for gatherer in ("tasks/__init__.py", "api/__init__.py"):
        text = (package / gatherer).read_text()
        (package / gatherer).write_text(text.replace('"""\n', '\nSince 1.1.0.\n"""\n', 1))
    edit(
        template_repo / "template/src/{{package_name}}/tasks/events.py",
        '"""Processing reported events: the smallest complete task, to copy from."""',
        '"""Processing reported events (since 1.1.0: a clearer docstring)."""',
    )
    git(template_repo, "add", "--all")
    git(template_repo, "commit", "--quiet", "--message", "1.1.0")
    git(template_repo, "tag", "1.1.0")

    update(user_project)

    assert_user_edits_kept(user_project)
    assert (user_project / "tests/test_release.py").is_file()
    for name, text in RELEASE_FILES.items():
        assert (user_project / PACKAGE / name).read_text() == text
    assert "\nSince 1.1.0.\n" in (user_project / PACKAGE / "api/__init__.py").read_text()
    assert not git(user_project, "diff", "--name-only", "--diff-filter=U")
    events = (user_project / PACKAGE / "tasks/events.py").read_text()
    assert "since 1.1.0: a clearer docstring" in events
    answers = yaml.safe_load((user_project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "1.1.0"
    assert not list(user_project.rglob("*.rej"))
    summary = run_gates(user_project)
    assert "failed" not in summary


@pytest.mark.parametrize("database", ["sqlite", "postgresql"], indirect=True)
def test_switching_backend_touches_no_route_or_task_module(
    user_project: Path, database: str, request: pytest.FixtureRequest
) -> None:
    extra = {}
    if database == "postgresql":
        extra["TEST_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    shared = sorted(
        path.relative_to(user_project)
        for folder in ("api", "tasks", "jobs")
        for path in (user_project / PACKAGE / folder).glob("*.py")
        if path.name not in ("queue.py", "relay.py")
    )
    before = {name: (user_project / name).read_text() for name in shared}
    project_before = project_tree(user_project)

    update(user_project, task_backend="arq")

    assert {name: (user_project / name).read_text() for name in shared} == before
    assert_user_edits_kept(user_project)
    assert (user_project / PACKAGE / "worker.py").is_file()
    assert "QueueRedis" in (user_project / PACKAGE / "jobs/queue.py").read_text()
    assert "failed" not in run_gates(user_project, extra=extra)
    git(user_project, "add", "--all")
    git(user_project, "commit", "--quiet", "--message", "switch to arq")

    update(user_project, task_backend="background")

    assert {name: (user_project / name).read_text() for name in shared} == before
    assert_user_edits_kept(user_project)
    assert not (user_project / PACKAGE / "worker.py").exists()
    assert "BackgroundTasks" in (user_project / PACKAGE / "jobs/queue.py").read_text()
    # Back where it started, byte for byte: the gates of that project (the matrix's
    # background variant with the user's edits, as
    # test_a_release_merges_with_user_edits_and_additions gates them) need not run again.
    assert project_tree(user_project) == project_before
    answers = yaml.safe_load((user_project / ".copier-answers.yml").read_text())
    assert answers["database"] == database


def test_moving_to_postgresql_keeps_the_migrations_and_the_user_edits(
    user_project: Path, request: pytest.FixtureRequest
) -> None:
    versions = user_project / PACKAGE / "migrations/versions"
    revisions = {path.name: path.read_text() for path in versions.glob("*.py")}

    update(user_project, database="postgresql")

    assert_user_edits_kept(user_project)
    assert {path.name: path.read_text() for path in versions.glob("*.py")} == revisions
    dependencies = (user_project / "pyproject.toml").read_text()
    assert "asyncpg" in dependencies
    assert "aiosqlite" not in dependencies
    extra = {"TEST_DATABASE_URL": request.getfixturevalue("postgres_url")}
    assert "failed" not in run_gates(user_project, extra=extra)


def release_repo(tmp_path: Path, commit: str) -> Path:
    """This repository's template at `commit`, in a git repo of its own tagged 0.9.0."""
    repo = tmp_path / "template-repo"
    repo.mkdir()
    archive = subprocess.run(
        ["git", "archive", commit, "copier.yml", "template"],
        cwd=TEMPLATE,
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x"], input=archive.stdout, cwd=repo, check=True)
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "0.9.0")
    git(repo, "tag", "0.9.0")
    return repo


def release_head(repo: Path) -> None:
    """Replace the template in `repo` with this working tree's, tagged 1.0.0."""
    shutil.rmtree(repo / "template")
    shutil.copy(TEMPLATE / "copier.yml", repo)
    shutil.copytree(TEMPLATE / "template", repo / "template")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "1.0.0")
    git(repo, "tag", "1.0.0")


# The oldest project we support, from before releases (and before the `docker`,
# `github_actions` and `database` questions): it made its tables at start and hashed
# passwords with scrypt.
OLDEST = "86bd369"
OLD_PASSWORD = "correct horse battery"
OLD_DATABASE = f"""
import asyncio, sys
from sqlalchemy.ext.asyncio import create_async_engine
from acme_shop.models import Base
from acme_shop.security import hash_password

async def main():
    engine = create_async_engine("sqlite+aiosqlite:///" + sys.argv[1])
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
        await connection.exec_driver_sql(
            "INSERT INTO users (email, name, password_hash, created_at) VALUES (?, ?, ?, ?)",
            ("ada@example.com", "Ada", hash_password({OLD_PASSWORD!r}), "2026-11-20"),
        )
        await connection.exec_driver_sql(
            "INSERT INTO task_failures (task, job_id, request_id, attempt, arguments, error,"
            " traceback, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ("send_welcome_email", "old-job-1", "req-old", 4, "(1,)", "SMTPServerDisconnected",
             "Traceback ...", "2026-11-21"),
        )
    await engine.dispose()

asyncio.run(main())
"""
VERIFY = f"""
import sys
from acme_shop.security import password_hash
matches, new_hash = password_hash.verify_and_update({OLD_PASSWORD!r}, sys.argv[1])
print(matches, (new_hash or "")[:10])
"""


def test_the_oldest_project_keeps_its_shape_its_rows_and_its_users(tmp_path: Path) -> None:
    old_release = release_repo(tmp_path, OLDEST)
    project = tmp_path / "acme-shop"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(str(old_release), project, vcs_ref="0.9.0", defaults=True, quiet=True)
    old_answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert not {"database", "docker", "github_actions"} & set(old_answers)
    # Its database as that release made it (create_all at start-up), with a user whose
    # password it hashed (scrypt, before argon2id).
    database = tmp_path / "old.db"
    run(project, "uv", "sync", "--quiet")
    run(project, "uv", "run", "--no-sync", "python", "-c", OLD_DATABASE, str(database))
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "generated")

    release_head(old_release)
    update(project)

    # `--defaults` answers each new question as the project was: no file it did not have.
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "1.0.0"
    assert answers["database"] == "sqlite"
    assert not answers["docker"]
    assert not answers["github_actions"]
    assert not answers["opentelemetry"]
    for added_by_a_yes in ("Dockerfile", "compose.yaml", ".github", ".pre-commit-config.yaml"):
        assert not (project / added_by_a_yes).exists()
    dependencies = (project / "pyproject.toml").read_text()
    assert "aiosqlite" in dependencies
    assert "asyncpg" not in dependencies
    assert (project / PACKAGE / "migrations/versions/0001_initial.py").is_file()
    assert "failed" not in run_gates(project)

    url = {
        "ACME_SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "ACME_SHOP_LOG_FORMAT": "json",
    }
    migrated = run(project, "uv", "run", "--no-sync", "acme_shop", "migrate", extra=url)
    assert '"database_adopted"' in migrated.stdout + migrated.stderr
    with sqlite3.connect(database) as connection:
        [(password_hash,)] = connection.execute("SELECT password_hash FROM users").fetchall()
        # The failure the old release kept is in the dead letter, a failed job.
        failed = "SELECT id, task, status, tries, request_id, error FROM jobs"
        assert connection.execute(failed).fetchall() == [
            ("old-job-1", "send_welcome_email", "failed", 4, "req-old", "SMTPServerDisconnected")
        ]
    verified = run(project, "uv", "run", "--no-sync", "python", "-c", VERIFY, password_hash)
    assert verified.stdout.split() == ["True", "$argon2id$"], "the old user logs in, rehashed"


def test_the_documented_relock_makes_a_locked_sync_pass_after_a_backend_switch(
    template_repo: Path, user_project: Path
) -> None:
    """An update that changes dependencies leaves the committed uv.lock stale, so CI's
    and the image's `uv sync --locked` fail; the update instructions' `uv lock` fixes it."""
    run(user_project, "uv", "lock", "--quiet")
    git(user_project, "add", "uv.lock")
    git(user_project, "commit", "--quiet", "--message", "lock")

    update(user_project, task_backend="arq")
    stale = subprocess.run(
        ["uv", "sync", "--locked", "--quiet"], cwd=user_project, capture_output=True, text=True
    )
    steps = ("uv lock", "uv run {{ package_name }} migrate")
    documented = (
        (template_repo / "copier.yml").read_text(),
        (template_repo / "template/README.md.jinja").read_text(),
    )

    assert stale.returncode != 0, "uv sync --locked passed with a stale uv.lock"
    assert "needs to be updated" in stale.stderr, stale.stderr
    assert all(step in text for step in steps for text in documented)
    run(user_project, "uv", "lock", "--quiet")  # the documented step
    run(user_project, "uv", "sync", "--locked", "--quiet")


def test_the_update_message_finds_the_conflicts_and_starts_the_worker(
    template_repo: Path, user_project: Path
) -> None:
    """A release changes the line the user changed: the update leaves both versions; its
    message says how to find them (and they are found so), then what to run, the worker
    included after a switch to arq."""
    edit(
        template_repo / "template/src/{{package_name}}/tasks/events.py",
        'ctx.log.info("event_processed", event_id=event_id, name=event.name)',
        'ctx.log.info("event_processed", event_id=event_id, event_name=event.name)',
    )
    git(template_repo, "commit", "--quiet", "--all", "--message", "1.1.0")
    git(template_repo, "tag", "1.1.0")

    copier_cli = Path(sys.executable).with_name("copier")
    updated = run(user_project, str(copier_cli), "update", "--defaults", "-d", "task_backend=arq")
    message = updated.stdout + updated.stderr

    assert "updated to the template's 1.1.0" in message
    assert "CHANGELOG.md" in message
    found = git(user_project, "grep", "-n", "^<<<<<<< before updating")
    assert found.startswith("src/acme_shop/tasks/events.py:")
    assert "git grep -n '^<<<<<<< before updating'" in message
    assert "UU src/acme_shop/tasks/events.py" in git(user_project, "status", "--short")
    assert "`git status` lists the files" in message
    lines = [line.strip() for line in message.splitlines()]
    for step in ("uv lock", "uv run acme_shop migrate", "uv run pytest"):
        assert step in lines
    worker = (
        "uv run arq acme_shop.worker.WorkerSettings --custom-log-dict acme_shop.worker.LOG_CONFIG"
    )
    assert worker in lines
    assert "ACME_SHOP_REDIS_URL" in message


# A release from before the outbox: its arq API queued each job in Redis alone (no row),
# with the request id among the job's arguments.
BEFORE_THE_OUTBOX = "c7c3227"


def test_jobs_queued_before_the_outbox_run_once_after_the_update(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    """arq + PostgreSQL, generated before the outbox: its API queues a welcome email, an
    event and an order's three jobs while no worker runs; the project updates, follows the
    message's steps (relock, migrate, start the worker), and every job runs once, from a
    row that names its request; the user registered before logs in."""
    repo = release_repo(tmp_path, BEFORE_THE_OUTBOX)
    project = tmp_path / "acme-shop"
    data = {"task_backend": "arq", "database": "postgresql"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(str(repo), project, vcs_ref="0.9.0", data=data, defaults=True, quiet=True)
    run(project, "uv", "sync", "--quiet")
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "generated")

    with running_smtp_sink() as (sink, smtp_port):
        env = app_environment(
            tmp_path,
            smtp_port,
            new_database("postgresql", tmp_path, postgres_url),
            ACME_SHOP_REDIS_URL=redis_url,
            ACME_SHOP_QUEUE_NAME=f"update:{tmp_path.name}",
        )
        migrate(project, env)
        old_api, base = start_api(project, env, tmp_path / "old-api.log")
        try:
            registered = httpx.post(f"{base}/register", json=USER, timeout=10)
            event = httpx.post(f"{base}/events", json={"name": "signup"}, timeout=10)
            order = httpx.post(f"{base}/order", json=ORDER, timeout=10)
        finally:
            old_api.stop()
        assert [registered.status_code, event.status_code, order.status_code] == [201, 202, 201]
        queued = [job for r in (registered, event, order) for job in r.json()["jobs"]]
        assert len(queued) == 5
        assert sink.to(USER["email"]) == 0, "no worker ran: the jobs wait in Redis"

        release_head(repo)
        update(project)
        run(project, "uv", "lock", "--quiet")
        run(project, "uv", "sync", "--quiet")
        migrate(project, env)
        worker = Process(
            project, env, "arq", "acme_shop.worker.WorkerSettings",
            "--custom-log-dict", "acme_shop.worker.LOG_CONFIG", log=tmp_path / "worker.log",
        )  # fmt: skip
        api, base = start_api(project, env, tmp_path / "api.log")
        try:
            wait_for(lambda: sink.to(USER["email"]) == 1, 60, "the welcome email")
            database = env["ACME_SHOP_DATABASE_URL"]
            finished = "SELECT id FROM jobs WHERE status IN ('succeeded', 'failed')"
            wait_for(lambda: len(query(database, finished)) == 5, 60, "every queued job's end")
            login = httpx.post(f"{base}/login", json=CREDENTIALS, timeout=10)
        finally:
            api.stop()
            worker.stop()

    assert login.status_code == 200
    rows = query(database, "SELECT id, task, status, tries, request_id FROM jobs")
    by_id = {row[0]: row[1:] for row in rows if row[0] in queued}
    assert sorted(by_id) == sorted(queued), "each queued job has its row"
    assert all(request_id for _, _, _, request_id in by_id.values())
    assert {task: status for task, status, _, _ in by_id.values()} == {
        "send_welcome_email": "succeeded",
        "process_event": "succeeded",
        "send_order_confirmation": "succeeded",
        "update_inventory": "succeeded",
        "notify_admin": "succeeded",
    }
    started = [line["job_id"] for line in worker.events("task_started")]
    assert sorted(job for job in started if job in queued) == sorted(queued), "each ran once"


# The first release, 0.1.0, by its commit: a tag made in one clone is not always carried
# over to another, a commit on main is.
FIRST_RELEASE = "cb655ea"
GRACE = {"email": "grace@example.com", "name": "Grace", "password": "another long secret"}


def test_the_first_release_s_project_keeps_users_jobs_and_edits(
    tmp_path: Path,
) -> None:
    """The default answers at 0.1.0, with the user's own task and route: its API leaves a
    failed welcome email and order confirmation (no mail server) and a welcome email
    pending its second try; the project updates and follows the changelog's steps; the
    pending job runs once, the failed ones stay in the dead letter, both users log in, and
    the project's gates and tests pass with the user's modules in them."""
    repo = release_repo(tmp_path, FIRST_RELEASE)
    project = tmp_path / "acme-shop"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(str(repo), project, vcs_ref="0.9.0", defaults=True, quiet=True)
    for name, text in USER_FILES.items():
        (project / name).write_text(text)
    run(project, "uv", "sync", "--quiet")
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "generated, with the user's report task")

    token = "a-long-admin-token-for-the-dead-letter"
    no_mail_server = free_port()
    env = app_environment(tmp_path, no_mail_server, ACME_SHOP_ADMIN_TOKEN=token)
    database = env["ACME_SHOP_DATABASE_URL"]
    migrate(project, env)
    old_api, base = start_api(project, env, tmp_path / "old-api.log")
    try:
        assert httpx.post(f"{base}/register", json=USER, timeout=10).status_code == 201
        assert httpx.post(f"{base}/order", json=ORDER, timeout=10).status_code == 201
        assert httpx.post(f"{base}/reports/daily", timeout=10).status_code == 202
        failed = "SELECT task FROM jobs WHERE status = 'failed'"
        wait_for(lambda: len(query(database, failed)) == 2, 60, "two emails failed for good")
    finally:
        old_api.stop()
    # A second try due in 8 s: the job is pending when the old API stops (at once: its
    # shutdown grace ends the wait for that try).
    slow_retry = env | {
        "ACME_SHOP_TASK_RETRY_BACKOFF_SECONDS": "8",
        "ACME_SHOP_SHUTDOWN_GRACE_SECONDS": "1",
    }
    old_api, base = start_api(project, slow_retry, tmp_path / "old-api-2.log")
    try:
        registered = httpx.post(f"{base}/register", json=GRACE, timeout=10)
        assert registered.status_code == 201
        [pending_id] = registered.json()["jobs"]
        tried_once = f"SELECT status FROM jobs WHERE id = '{pending_id}' AND tries = 1"
        wait_for(lambda: query(database, tried_once) == [("pending",)], 30, "a first try")
    finally:
        old_api.stop()

    release_head(repo)
    update(project)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "1.0.0"
    for name, text in USER_FILES.items():
        assert (project / name).read_text() == text, f"{name} is the user's"
    # The changelog's steps: relock, migrate, (restart).
    run(project, "uv", "lock", "--quiet")
    run(project, "uv", "sync", "--quiet")
    migrate(project, env)
    with running_smtp_sink() as (sink, smtp_port):
        env = env | {"ACME_SHOP_SMTP_PORT": str(smtp_port)}
        api, base = start_api(project, env, tmp_path / "api.log")
        try:
            wait_for(lambda: sink.to(GRACE["email"]) == 1, 60, "the pending welcome email")
            logins = [
                httpx.post(f"{base}/login", json={k: user[k] for k in CREDENTIALS}, timeout=10)
                for user in (USER, GRACE)
            ]
            headers = {"Authorization": f"Bearer {token}"}
            dead_letter = httpx.get(f"{base}/tasks/failed", headers=headers, timeout=10)
        finally:
            api.stop()

    assert [login.status_code for login in logins] == [200, 200]
    assert dead_letter.status_code == 200
    dead = sorted(job["task"] for job in dead_letter.json()["jobs"])
    assert dead == ["send_order_confirmation", "send_welcome_email"]
    assert sink.to(USER["email"]) == 0, "a failed job is not run again by itself"
    ended = f"SELECT status, tries FROM jobs WHERE id = '{pending_id}'"
    assert query(database, ended) == [("succeeded", 2)]
    started = [line["job_id"] for line in api.events("task_started")]
    assert started.count(pending_id) == 1, "the pending job ran once"
    assert "failed" not in run_gates(project)
