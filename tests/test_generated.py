"""Every answer combination renders a project that passes its own gates, with nothing but uv."""

from pathlib import Path

from .conftest import OWN_REDIS_VARIANT, record, run


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


def test_generated_tests_pass(synced_project: Path, variant: str) -> None:
    without = ("REDIS_URL",) if variant == OWN_REDIS_VARIANT else ()
    command = ("uv", "run", "--no-sync", "pytest", "-q", "-p", "no:cacheprovider")
    result = run(synced_project, *command, without=without)

    summary = result.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert " failed" not in summary
    assert " skipped" not in summary
    minimum = {"background-examples": 15, "arq-examples": 20}.get(variant.rsplit("-", 1)[0], 10)
    assert passed >= minimum, summary
    record(variant, f"pytest ({passed} passed)")
