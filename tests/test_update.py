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

PING_ROUTE = '''"""GET /ping: a route the user added."""

from fastapi import APIRouter

router = APIRouter(tags=["ping"])


@router.get("/ping")
async def ping() -> dict[str, str]:
    return {"ping": "pong"}
'''

PING_TEST = """import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_ping(client: httpx.AsyncClient) -> None:
    response = await client.get("/ping")

    assert response.json() == {"ping": "pong"}
"""

RELEASE_TEST = """from {{ package_name }}.settings import Settings


def test_logs_are_for_reading_by_default() -> None:
    assert Settings(_env_file=None).log_format == "console"
"""


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

    (project / PACKAGE / "api/ping.py").write_text(PING_ROUTE)
    edit(
        project / PACKAGE / "api/__init__.py",
        "from .orders import router as orders\n",
        "from .orders import router as orders\nfrom .ping import router as ping\n",
    )
    edit(
        project / PACKAGE / "api/__init__.py",
        "api_router.include_router(orders)\n",
        "api_router.include_router(orders)\napi_router.include_router(ping)\n",
    )
    edit(
        project / PACKAGE / "tasks/events.py",
        'ctx.log.info("event_processed", event_id=event_id, name=event.name)',
        'ctx.log.info("event_processed", event_id=event_id, name=event.name, source="api")',
    )
    (project / "tests/api/test_ping.py").write_text(PING_TEST)
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
    assert (project / PACKAGE / "api/ping.py").read_text() == PING_ROUTE
    assert (project / "tests/api/test_ping.py").read_text() == PING_TEST
    assert "include_router(ping)" in (project / PACKAGE / "api/__init__.py").read_text()
    assert 'source="api"' in (project / PACKAGE / "tasks/events.py").read_text()


def test_update_to_a_new_release_keeps_user_edits(template_repo: Path, user_project: Path) -> None:
    (template_repo / "template/tests/test_release.py.jinja").write_text(RELEASE_TEST)
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
    # background variant with the user's edits, as test_update_to_a_new_release_keeps_user_edits
    # gates them) need not run again.
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


# The last release without the `database` question: its projects made their tables at start.
BEFORE_MIGRATIONS = "1c94ec7"
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


def test_a_project_from_before_the_database_question_keeps_sqlite(tmp_path: Path) -> None:
    old_release = tmp_path / "old-template"
    old_release.mkdir()
    archive = subprocess.run(
        ["git", "archive", BEFORE_MIGRATIONS, "copier.yml", "template"],
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
    assert "database" not in yaml.safe_load((project / ".copier-answers.yml").read_text())
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

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert (answers["_commit"], answers["database"]) == ("1.0.0", "sqlite")
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
