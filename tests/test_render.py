"""What `copier copy` writes, for each variant."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import jinja_left, render

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

COMMON = {
    ".copier-answers.yml",
    ".dockerignore",
    ".env.example",
    ".github/workflows/ci.yml",
    ".gitignore",
    ".pre-commit-config.yaml",
    "Dockerfile",
    "README.md",
    "compose.yaml",
    "prometheus/alerts.yml",
    "pyproject.toml",
    "src/acme_shop/api/events.py",
    "src/acme_shop/api/metrics.py",
    "src/acme_shop/metrics.py",
    "tests/test_metrics.py",
    "src/acme_shop/api/failed_tasks.py",
    "src/acme_shop/api/health.py",
    "src/acme_shop/main.py",
    "src/acme_shop/deps.py",
    "src/acme_shop/idempotency.py",
    "src/acme_shop/jobs/dead_letter.py",
    "src/acme_shop/logging.py",
    "src/acme_shop/settings.py",
    "src/acme_shop/tasks/__init__.py",
    "src/acme_shop/tasks/events.py",
    "src/acme_shop/jobs/__init__.py",
    "src/acme_shop/jobs/outbox.py",
    "src/acme_shop/jobs/queue.py",
    "src/acme_shop/jobs/records.py",
    "src/acme_shop/jobs/relay.py",
    "src/acme_shop/jobs/runtime.py",
    "src/acme_shop/api/jobs.py",
    "src/acme_shop/migrations/versions/0002_jobs.py",
    "tests/conftest.py",
    "tests/api/test_idempotency.py",
    "tests/api/test_failed_tasks.py",
    "tests/test_cli.py",
    "tests/stubs/tasks.py",
    "tests/jobs/test_outbox.py",
    "tests/jobs/test_relay.py",
    "tests/jobs/test_runtime.py",
    "tests/api/test_jobs.py",
    "tests/tasks/test_registry.py",
}
EXAMPLES = {
    "src/acme_shop/api/users.py",
    "src/acme_shop/api/uploads.py",
    "src/acme_shop/api/orders.py",
    "src/acme_shop/mail.py",
    "src/acme_shop/tasks/email.py",
    "src/acme_shop/tasks/images.py",
    "src/acme_shop/tasks/orders.py",
    "src/acme_shop/tasks/activity.py",
    "tests/stubs/smtp.py",
    "tests/stubs/image_api.py",
    "tests/api/test_users.py",
    "tests/tasks/test_email.py",
}
# `${{ ... }}` is a GitHub Actions expression, meant to be left.
JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{-?\s*[A-Za-z_]|\{%-?\s*\w|\{#")
"""Any Jinja at all (stricter than the hygiene check's), but in the app's own templates,
rendered at request time, only copier's answers (`jinja_left`)."""


def files(project: Path) -> set[str]:
    return {str(path.relative_to(project)) for path in project.rglob("*") if path.is_file()}


@pytest.mark.parametrize("include_examples", [True, False])
def test_rendered_files(tmp_path: Path, include_examples: bool) -> None:
    project = render(tmp_path / "acme-shop", include_examples=include_examples)

    rendered = files(project)
    assert rendered >= COMMON
    if include_examples:
        assert rendered >= EXAMPLES
    else:
        assert not EXAMPLES & rendered
    for name in rendered:
        text = (project / name).read_text()
        assert not jinja_left(Path(name), text, JINJA_LEFTOVER), f"Jinja left in {name}"
        if name.endswith(".py"):
            ast.parse(text, filename=name)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "acme-shop"
    assert pyproject["project"]["requires-python"] == ">=3.11"
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["package_name"] == "acme_shop"
    assert answers["include_examples"] is include_examples
    assert answers["task_backend"] == "background"
    assert not (project / "src/acme_shop/worker.py").exists()


def test_defaults_derive_from_the_project_name(tmp_path: Path) -> None:
    project = render(tmp_path / "out", project_name="  Acme Shop 2.0! ")

    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["project_slug"] == "acme-shop-2-0"
    assert answers["package_name"] == "acme_shop_2_0"


def test_free_text_answers_are_escaped(tmp_path: Path) -> None:
    tricky = 'Say "hi" \\ {{ not jinja }} — ☃ 😀'
    project = render(
        tmp_path / "out",
        project_name=tricky,
        description=tricky,
        author_name=tricky,
        package_name="tricky",
    )

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == tricky
    assert pyproject["project"]["authors"][0]["name"] == tricky
    settings = (project / "src/tricky/settings.py").read_text()
    assert ast.literal_eval(re.search(r"app_name: str = (.+)", settings)[1]) == tricky


def test_the_copier_cli_renders_without_trust(tmp_path: Path) -> None:
    from .conftest import TEMPLATE

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--defaults",
            "--vcs-ref",
            "HEAD",
            str(TEMPLATE),
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x/src/x/main.py").is_file()
    # The answers file a new question reads on update is not looked for in a new copy.
    assert "MissingFileWarning" not in result.stderr


@pytest.mark.parametrize("include_examples", [True, False])
def test_routes_and_tasks_are_the_same_text_for_both_backends(
    tmp_path: Path, include_examples: bool
) -> None:
    background = render(tmp_path / "bg" / "acme-shop", include_examples=include_examples)
    arq = render(
        tmp_path / "arq" / "acme-shop", task_backend="arq", include_examples=include_examples
    )

    package = Path("src/acme_shop")
    shared = [
        path.relative_to(background)
        for folder in ("api", "tasks", "jobs")
        for path in sorted((background / package / folder).glob("*.py"))
        # queue.py is the backend; relay.py's docstring says which process runs it
        if path.name not in ("queue.py", "relay.py")
    ]
    assert len(shared) >= 10
    for name in shared:
        assert (arq / name).read_text() == (background / name).read_text(), name
    assert (arq / package / "worker.py").is_file()
    assert not (background / package / "worker.py").exists()


@pytest.mark.parametrize("python_version", ["3.12", "3.13"])
@pytest.mark.parametrize("task_backend", ["background", "arq"])
def test_newer_python_targets_pass_ruff(
    tmp_path: Path, python_version: str, task_backend: str
) -> None:
    """ruff's rules depend on the target Python; 3.11 is covered by test_generated."""
    project = render(
        tmp_path / "acme-shop", python_version=python_version, task_backend=task_backend
    )

    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={python_version}"
    assert pyproject["tool"]["ruff"]["target-version"] == f"py{python_version.replace('.', '')}"
