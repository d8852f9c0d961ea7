"""The rendered project passes its own gates, with nothing but `uv`."""

from pathlib import Path

from .conftest import run


def test_ruff_check(synced_project: Path) -> None:
    run(synced_project, "uv", "run", "ruff", "check", ".")


def test_ruff_format_changes_nothing(synced_project: Path) -> None:
    run(synced_project, "uv", "run", "ruff", "format", "--check", ".")


def test_mypy_strict(synced_project: Path) -> None:
    result = run(synced_project, "uv", "run", "mypy")
    assert "Success: no issues found" in result.stdout


def test_generated_tests_pass(synced_project: Path, variant: str) -> None:
    # One arq variant runs without REDIS_URL: its fixture must start its own redis-server.
    without = ("REDIS_URL",) if variant == "arq-no-examples" else ()
    command = ("uv", "run", "pytest", "-q", "-p", "no:cacheprovider")
    result = run(synced_project, *command, without=without)
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert " failed" not in summary
    assert " skipped" not in summary
    assert passed >= {"default": 15, "arq": 20}.get(variant, 10), summary
