"""Every answer combination renders a project that passes its own gates, with nothing but uv."""

import os
from pathlib import Path

import pytest

from .conftest import OWN_POSTGRES_VARIANT, OWN_REDIS_VARIANT, VARIANTS, record, run


def test_ruff_check(synced_project: Path, variant: str) -> None:
    run(synced_project, "uv", "run", "--no-sync", "ruff", "check", ".")
    record(variant, "ruff")


def test_ruff_format_changes_nothing(synced_project: Path, variant: str) -> None:
    run(synced_project, "uv", "run", "--no-sync", "ruff", "format", "--check", ".")
    record(variant, "format")


def test_mypy_strict(synced_project: Path, variant: str) -> None:
    result = run(synced_project, "uv", "run", "--no-sync", "mypy")
    assert "Success: no issues found" in result.stdout
    record(variant, "mypy")


def test_generated_tests_pass(
    synced_project: Path, variant: str, request: pytest.FixtureRequest
) -> None:
    without = ("REDIS_URL", "TEST_DATABASE_URL")
    extra = {}
    if variant != OWN_REDIS_VARIANT and "REDIS_URL" in os.environ:
        extra["REDIS_URL"] = os.environ["REDIS_URL"]
    if VARIANTS[variant]["database"] == "postgresql" and variant != OWN_POSTGRES_VARIANT:
        extra["TEST_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    command = ("uv", "run", "--no-sync", "pytest", "-q", "-p", "no:cacheprovider")
    result = run(synced_project, *command, without=without, extra=extra)

    summary = result.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert " failed" not in summary
    assert " skipped" not in summary
    minimum = {"background-examples": 15, "arq-examples": 20}.get(
        "-".join(variant.split("-")[:2]), 10
    )
    assert passed >= minimum, summary
    record(variant, f"pytest ({passed} passed)")
