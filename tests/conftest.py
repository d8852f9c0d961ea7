"""Render the template with copier's own API and run the rendered project's tools."""

import itertools
import json
import os
import re
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import copier
import pytest

from .postgres_server import running_postgres
from .redis_server import running_redis

TEMPLATE = Path(__file__).resolve().parent.parent

# uv must not try to download an interpreter: only the Pythons on this machine count.
os.environ["UV_PYTHON_DOWNLOADS"] = "never"


def python_available(version: str) -> bool:
    found = subprocess.run(["uv", "python", "find", version], capture_output=True, check=False)
    return found.returncode == 0


PYTHONS = [version for version in ("3.11", "3.12", "3.13") if python_available(version)]

# Every combination of the template's choice and bool questions, on each Python found;
# opentelemetry on in some of them, so that each flavour is checked with and without it
# (never on the lowest Python's SQLite ones: those are the defaults, the first look);
# PostgreSQL on the lowest Python only (the database code is the same for every Python,
# and CI must stay well under its 90 minutes on 2 cores).
VARIANTS: dict[str, dict[str, Any]] = {
    f"{backend}-{'examples' if examples else 'minimal'}-{database}"
    f"{'-otel' if tracing else ''}-py{python}": {
        "task_backend": backend,
        "include_examples": examples,
        "database": database,
        "python_version": python,
        "opentelemetry": tracing,
    }
    for backend, examples, database, python in itertools.product(
        ("background", "arq"), (True, False), ("sqlite", "postgresql"), PYTHONS
    )
    if database == "sqlite" or python == PYTHONS[0]
    # opentelemetry on the middle Python's SQLite variants and PostgreSQL's with examples.
    for tracing in [
        python == PYTHONS[len(PYTHONS) // 2] != PYTHONS[0] if database == "sqlite" else examples
    ]
}
# The variants whose generated tests run: all but the newest Python's minimal ones. Those
# are the oldest Python's minimal code (its pytest runs) under a newer target that ruff
# and mypy gate, and the newest Python's runtime runs under its examples variants, whose
# modules are a superset (57 s of CPU each, measured, for nothing new).
TESTED_VARIANTS = [
    name
    for name, answers in VARIANTS.items()
    if answers["include_examples"] or answers["python_version"] != PYTHONS[-1] or len(PYTHONS) == 1
]
# Variants whose generated tests run without REDIS_URL or TEST_DATABASE_URL, so that
# their fixtures start a redis-server or a PostgreSQL server themselves.
OWN_REDIS_VARIANT = "arq-minimal-sqlite-py3.11"
OWN_POSTGRES_VARIANT = "background-minimal-postgresql-py3.11"
FIRST_LOOK_VARIANT = f"background-examples-sqlite-py{PYTHONS[0]}"
"""The default answers': `uv run pytest -m first_look` renders it and runs its gates."""
MATRIX_REPORT: dict[str, list[str]] = {}
"""Variant -> the checks it passed; filled from the reports, so under pytest-xdist too."""


def render(dst: Path, src: Path = TEMPLATE, **data: Any) -> Path:
    """`copier copy --defaults` of `src` into `dst`, then the hygiene checks."""
    # HEAD, with the work tree's uncommitted changes: without a ref, copier would take the
    # latest release tag and test that instead of the change at hand.
    copier.run_copy(str(src), dst, data=data, defaults=True, quiet=True, vcs_ref="HEAD")
    assert_hygienic(dst, answers=[str(value) for value in data.values()])
    return dst


def run(
    project: Path,
    *command: str,
    timeout: float = 600,
    without: tuple[str, ...] = (),
    extra: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in a rendered project; fail the test with its output if it fails.

    `without`: environment variables to leave out; `extra`: variables to add;
    `env`: the whole environment instead."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", *without)}
        env |= extra or {}
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} failed in {project} ({result.returncode}):\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    )
    return result


def run_gates(
    project: Path, *, without: tuple[str, ...] = (), extra: dict[str, str] | None = None
) -> str:
    """uv sync, ruff check, ruff format --check, mypy and the generated tests; their summary.

    `extra`: environment for the generated tests (TEST_DATABASE_URL for PostgreSQL)."""
    python = tomllib.loads((project / "pyproject.toml").read_text())["project"]["requires-python"]
    run(project, "uv", "sync", "--quiet", "--python", python.removeprefix(">="))
    run(project, "uv", "run", "--no-sync", "ruff", "check", ".")
    run(project, "uv", "run", "--no-sync", "ruff", "format", "--check", ".")
    run(project, "uv", "run", "--no-sync", "mypy")
    pytest = ("uv", "run", "--no-sync", "pytest", "-q", "-p", "no:cacheprovider")
    tests = run(project, *pytest, without=without, extra=extra)
    return tests.stdout.strip().splitlines()[-1]


# --- hygiene: checked on every render -------------------------------------------------------

COPIER_LEFTOVER = re.compile(
    r"\{\{-?\s*(project_|package_|description|author_|python_version|task_backend"
    r"|include_examples|database|_copier)"
)
"""An answer copier should have filled in: all that the app's own Jinja templates (the
dashboard's pages, rendered at request time) must not hold."""
JINJA_LEFTOVER = re.compile(
    COPIER_LEFTOVER.pattern + r"|\{%-?\s*(if|elif|else|endif|for|endfor|raw|endraw|set)\b|\{#"
)
APP_TEMPLATES = "/admin/templates/"


def jinja_left(relative: Path, text: str, anywhere: re.Pattern[str] = JINJA_LEFTOVER) -> bool:
    """Whether copier left Jinja in the rendered file `relative`: `anywhere` in a Python,
    TOML or YAML file; only its answers' names in the app's own Jinja templates."""
    app_template = APP_TEMPLATES in f"/{relative.as_posix()}"
    return bool((COPIER_LEFTOVER if app_template else anywhere).search(text))


WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)
WINDOWS_INVALID = re.compile(r'[<>:"\\|?*\x00-\x1f]|[. ]$')
SECRET_LITERAL = re.compile(
    r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|\b(sk|pk)_live_\w+"
    r"|(password|secret|token|api_key)\s*[:=]\s*[\"'][^\"'\s]{6,}[\"']",
    re.IGNORECASE,
)


def assert_hygienic(project: Path, answers: Sequence[str] = ()) -> None:
    """No Jinja left, names valid on Windows, no merge leftovers, .env ignored, no secrets."""
    for relative in project_files(project):
        path = project / relative
        for part in relative.parts:
            assert not WINDOWS_RESERVED.match(part), f"{relative}: reserved name on Windows"
            assert not WINDOWS_INVALID.search(part), f"{relative}: invalid name on Windows"
        assert path.suffix not in (".rej", ".orig"), f"{relative}: merge leftover"
        if path.name == ".copier-answers.yml":
            continue
        text = path.read_text()
        for answer in answers:  # what a user typed may look like Jinja; that is theirs
            double_quoted = json.dumps(answer, ensure_ascii=False)[1:-1]
            single_quoted = answer.replace("\\", "\\\\").replace("'", "\\'")
            for form in (double_quoted, single_quoted, answer):
                text = text.replace(form, "")
        assert not jinja_left(relative, text), f"{relative}: Jinja left"
        assert "<<<<<<<" not in text, f"{relative}: conflict marker"
        if relative.parts[0] != "tests":
            assert not SECRET_LITERAL.search(text), f"{relative}: secret-looking literal"
    assert not (project / ".env").exists()
    assert ".env" in (project / ".gitignore").read_text().splitlines()


def project_files(project: Path) -> list[Path]:
    """The project's files; in a git checkout, those git does not ignore."""
    if not (project / ".git").exists():
        return [path.relative_to(project) for path in project.rglob("*") if path.is_file()]
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return [Path(name) for name in listed.stdout.split("\0") if (project / name).is_file()]


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session", params=list(VARIANTS), ids=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def synced_project(variant: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered project of each variant, its environment installed with `uv sync`."""
    project = render(tmp_path_factory.mktemp(variant) / "acme-shop", **VARIANTS[variant])
    python = VARIANTS[variant]["python_version"]
    run(project, "uv", "sync", "--quiet", "--python", python)
    return project


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for the tests that run the app and its worker as processes."""
    with running_redis() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server the rendered projects' tests may create databases on."""
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def shared_mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One mypy cache for every project this test process checks. Most of mypy's work is
    the same third-party packages (FastAPI, SQLAlchemy, pydantic) in every variant; a
    project's own modules differ, and mypy checks again every file whose hash changed.
    Measured on this machine: 20.2 s cold, 4.9 s warm for the default project."""
    os.environ["MYPY_CACHE_DIR"] = str(tmp_path_factory.mktemp("mypy-cache"))


@pytest.fixture
def record(request: pytest.FixtureRequest, variant: str) -> Callable[[str], None]:
    """`record(check)`: the variant passed `check`, for the summary at the end."""

    def passed(check: str) -> None:
        request.node.user_properties.append(("matrix", f"{variant}\t{check}"))

    return passed


# --- running in parallel ---------------------------------------------------------------------
# `uv run pytest` runs on pytest-xdist's workers (pyproject.toml). The tests that share a
# rendered project (a variant's, a drill project's) stay on one worker, and the groups start
# longest first, so that no long one is left for the end. xdist's own `--dist loadgroup`
# cannot do the first under pytest 9 (it renames node ids through `item._nodeid`, which
# pytest 9 no longer reads: every test became its own group, and each worker rendered
# every drill project again), so the grouping is ours: `SharedProjectScheduling`.

SECONDS = {
    "test_generated.py::test_generated_tests_pass": 61,
    "test_generated.py::test_mypy_strict": 22,
    "test_update.py::test_switching_backend_touches_no_route_or_task_module": 193,
    "test_update.py::test_moving_to_postgresql_keeps_the_migrations_and_the_user_edits": 123,
    "test_update.py::test_the_oldest_project_keeps_its_shape_its_rows_and_its_users": 140,
    "test_update.py::test_a_release_merges_with_user_edits_and_additions": 74,
    "test_update.py::test_jobs_queued_before_the_outbox_run_once_after_the_update": 120,
    "test_update.py::test_the_update_message_finds_the_conflicts_and_starts_the_worker": 30,
    "test_update.py::test_the_first_release_s_project_keeps_users_jobs_and_edits": 160,
    "test_hostile_answers.py::test_hostile_answers_render_valid_files_or_are_refused": 116,
    "test_hostile_answers.py::test_hostile_samples_pass_the_gates": 74,
    "test_ship.py::test_the_image_and_compose_commands_serve": 18,
    "test_drills.py::test_f_every_write_of_a_jobs_life_survives_a_fault": 80,
    "test_drills.py::test_r12_a_worker_rides_out_a_long_redis_outage": 75,
    "test_drills": 25,
}
"""A test's wall seconds, by module::function or by module, as measured one after another
on this 2-core machine (2026-12-01); others count 1. Only the order of the groups uses it."""

DRILL_PROJECTS = ["background-sqlite", "arq-sqlite", "background-postgresql", "arq-postgresql"]
"""test_drills.py's projects (its `drill_project` params): a drill's id ends with its own."""

IN_ORDER = {
    "tests/test_hostile_answers.py::test_hostile_answers_render_valid_files_or_are_refused",
    "tests/test_hostile_answers.py::test_hostile_examples_were_both_accepted_and_refused",
}
"""Tests that must run in one process, in this order: the second reads what the first counted."""


def group_of(nodeid: str) -> str:
    """The tests that must share a worker: those of one rendered project, or `IN_ORDER`."""
    test, _, ids = nodeid.partition("[")
    ids = ids.removesuffix("]")
    if test in IN_ORDER:
        return "in-order"
    if ids in VARIANTS:
        return f"variant-{ids}"
    if test.startswith("tests/test_drills.py::"):
        return "drill-" + next(name for name in DRILL_PROJECTS if ids.endswith(name))
    return nodeid


def seconds_of(nodeid: str) -> float:
    module, _, test = nodeid.partition("::")
    key = f"{Path(module).name}::{test.split('[')[0]}"
    return SECONDS.get(key, SECONDS.get(Path(module).stem, 1))


def pytest_itemcollected(item: pytest.Item) -> None:
    if group_of(item.nodeid) == f"variant-{FIRST_LOOK_VARIANT}":
        item.add_marker(pytest.mark.first_look)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by parametrized fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    total: dict[str, float] = {}
    for item in items:
        group = group_of(item.nodeid)
        total[group] = total.get(group, 0) + seconds_of(item.nodeid)
    # Stable: a group keeps pytest's order. xdist takes the groups in this order
    # (--no-loadscope-reorder), each to the first worker free.
    items.sort(key=lambda item: -total[group_of(item.nodeid)])


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class SharedProjectScheduling(LoadScopeScheduling):
        """xdist's scope scheduling, with `group_of` as the scope."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return SharedProjectScheduling(config, log)


TIMES: dict[str, list[float]] = {}
"""Module -> [seconds summed over its tests' setup, call and teardown, first start, last stop]."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "matrix" and report.when == "call":
            variant, check = str(value).split("\t")
            MATRIX_REPORT.setdefault(variant, []).append(check)
    module = report.nodeid.split("::")[0]
    spent = TIMES.setdefault(module, [0.0, report.start, report.stop])
    spent[0] += report.duration
    spent[1], spent[2] = min(spent[1], report.start), max(spent[2], report.stop)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMES:
        terminalreporter.section("time by module (tests run side by side: spans overlap)")
        for module, (summed, first, last) in sorted(TIMES.items(), key=lambda kv: kv[1][1]):
            terminalreporter.write_line(
                f"{module:32} {summed / 60:6.1f} min of tests, "
                f"from {time.strftime('%H:%M:%S', time.localtime(first))} "
                f"to {time.strftime('%H:%M:%S', time.localtime(last))} "
                f"({(last - first) / 60:.1f} min)"
            )
    if not MATRIX_REPORT:
        return
    terminalreporter.section("answer combinations and the checks that passed")
    for variant in VARIANTS:
        checks = MATRIX_REPORT.get(variant)
        terminalreporter.write_line(f"{variant:32} {', '.join(checks) if checks else '-'}")
    missing = sorted({"3.11", "3.12", "3.13"} - set(PYTHONS))
    if missing:
        terminalreporter.write_line(f"Pythons uv did not find (not run): {', '.join(missing)}")
