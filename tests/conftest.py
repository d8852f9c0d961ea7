"""Render the template with copier's own API and run the rendered project's tools."""

import itertools
import json
import os
import re
import subprocess
import tomllib
import warnings
from collections.abc import Iterator, Sequence
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
# opentelemetry on in some of them, so that each flavour is checked with and without it;
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
    for tracing in [python == PYTHONS[len(PYTHONS) // 2] if database == "sqlite" else examples]
}
# Variants whose generated tests run without REDIS_URL or TEST_DATABASE_URL, so that
# their fixtures start a redis-server or a PostgreSQL server themselves.
OWN_REDIS_VARIANT = "arq-minimal-sqlite-py3.11"
OWN_POSTGRES_VARIANT = "background-minimal-postgresql-py3.11"
MATRIX_REPORT: dict[str, list[str]] = {}


def render(dst: Path, src: Path = TEMPLATE, **data: Any) -> Path:
    """`copier copy --defaults` of `src` into `dst`, then the hygiene checks."""
    with warnings.catch_warnings():
        # Copier says so when the template has no release tag yet; that is fine here.
        warnings.filterwarnings("ignore", message="No git tags found in template")
        copier.run_copy(str(src), dst, data=data, defaults=True, quiet=True)
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

JINJA_LEFTOVER = re.compile(
    r"\{\{-?\s*(project_|package_|description|author_|python_version|task_backend"
    r"|include_examples|database|_copier)|\{%-?\s*(if|elif|else|endif|for|endfor|raw|endraw|set)\b|\{#"
)
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
        assert not JINJA_LEFTOVER.search(text), f"{relative}: Jinja left"
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


def record(variant: str, check: str) -> None:
    MATRIX_REPORT.setdefault(variant, []).append(check)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MATRIX_REPORT:
        return
    terminalreporter.section("answer combinations and the checks that passed")
    for variant in VARIANTS:
        checks = MATRIX_REPORT.get(variant)
        terminalreporter.write_line(f"{variant:32} {', '.join(checks) if checks else '-'}")
    missing = sorted({"3.11", "3.12", "3.13"} - set(PYTHONS))
    if missing:
        terminalreporter.write_line(f"Pythons uv did not find (not run): {', '.join(missing)}")
