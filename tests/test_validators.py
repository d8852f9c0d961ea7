"""Bad answers are refused by a validator, with a sentence a user understands."""

from pathlib import Path
from typing import Any

import pytest

from .conftest import render
from .shadowed_modules import (
    COPIER_YML,
    PROJECT_OWN,
    dependency_import_names,
    listed_names,
    stdlib_names,
)

BAD_ANSWERS = [
    ({"project_name": "   "}, "project_name", "cannot be empty"),
    ({"project_name": "Two\nlines"}, "project_name", "single line"),
    ({"project_slug": "Acme Shop"}, "project_slug", "must be kebab-case"),
    ({"project_slug": "acme--shop"}, "project_slug", "must be kebab-case"),
    ({"project_slug": "1acme"}, "project_slug", "must be kebab-case"),
    ({"package_name": "Acme"}, "package_name", "snake_case"),
    ({"package_name": "acme-shop"}, "package_name", "snake_case"),
    ({"package_name": "class"}, "package_name", "is a Python keyword"),
    ({"package_name": "import"}, "package_name", "is a Python keyword"),
    ({"package_name": "email"}, "package_name", "would shadow the module"),
    ({"package_name": "logging"}, "package_name", "would shadow the module"),
    ({"package_name": "fastapi"}, "package_name", "would shadow the module"),
    ({"package_name": "arq"}, "package_name", "would shadow the module"),
    ({"package_name": "tests"}, "package_name", "would shadow the module"),
    ({"package_name": "calendar"}, "package_name", "would shadow the module"),
    ({"package_name": "alembic"}, "package_name", "would shadow the module"),
    ({"package_name": "asyncpg"}, "package_name", "would shadow the module"),
    ({"description": "line one\nline two"}, "description", "single line"),
    ({"author_name": ""}, "author_name", "cannot be empty"),
    ({"author_email": "not-an-email"}, "author_email", "is not an email address"),
    ({"author_email": "a@b"}, "author_email", "is not an email address"),
    ({"author_email": "a b@example.com"}, "author_email", "is not an email address"),
]


@pytest.mark.parametrize(("data", "question", "message"), BAD_ANSWERS)
def test_bad_answer_is_refused_with_its_message(
    tmp_path: Path, data: dict[str, Any], question: str, message: str
) -> None:
    with pytest.raises(ValueError, match=f"question '{question}'") as refused:
        render(tmp_path / "out", **data)

    assert message in str(refused.value)
    assert not (tmp_path / "out" / "pyproject.toml").exists()


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Invalid choice for 'task_backend'"):
        render(tmp_path / "out", task_backend="celery")


@pytest.mark.parametrize(
    "data",
    [
        {"project_name": "Acme Shop", "package_name": "acme"},
        {"package_name": "email_service"},
        {"package_name": "match"},
        {"author_email": "first.last+tag@mail.example.co.uk"},
        {"description": ""},
    ],
)
def test_good_answers_are_accepted(tmp_path: Path, data: dict[str, Any]) -> None:
    project = render(tmp_path / "out", **data)

    assert (project / "pyproject.toml").is_file()


def test_the_shadowing_list_misses_no_module_a_project_can_import(tmp_path: Path) -> None:
    """copier.yml's list cannot go stale: every standard-library module and every import
    name the generated projects install (dev tools included) is refused."""
    expected = stdlib_names() | dependency_import_names(tmp_path) | set(PROJECT_OWN)

    missing = sorted(expected - listed_names(COPIER_YML.read_text()))

    assert not missing, (
        f"copier.yml's package_name validator lets {missing} through; "
        "run `uv run python -m tests.shadowed_modules` to rewrite its list"
    )
