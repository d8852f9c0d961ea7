"""`copier update` across template releases and across backends keeps the user's edits."""

import shutil
import sqlite3
import subprocess
import warnings
from pathlib import Path

import copier
import pytest
import yaml

from .conftest import TEMPLATE, assert_hygienic, project_files, run, run_gates

PACKAGE = Path("src/acme_shop")

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
    old_release = tmp_path / "old-template"
    old_release.mkdir()
    archive = subprocess.run(
        ["git", "archive", OLDEST, "copier.yml", "template"],
        cwd=TEMPLATE,
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x"], input=archive.stdout, cwd=old_release, check=True)
    git(old_release, "init", "--quiet")
    git(old_release, "add", "--all")
    git(old_release, "commit", "--quiet", "--message", "0.9.0")
    git(old_release, "tag", "0.9.0")
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

    shutil.rmtree(old_release / "template")
    shutil.copy(TEMPLATE / "copier.yml", old_release)
    shutil.copytree(TEMPLATE / "template", old_release / "template")
    git(old_release, "add", "--all")
    git(old_release, "commit", "--quiet", "--message", "1.0.0")
    git(old_release, "tag", "1.0.0")
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
        assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
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
