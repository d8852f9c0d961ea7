"""Every answer combination renders a project that passes its own gates, with nothing but uv."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import OWN_POSTGRES_VARIANT, OWN_REDIS_VARIANT, TESTED_VARIANTS, VARIANTS, run

# The generated tests each flavour (backend-examples-database) has, exactly: a test module
# lost from the template is noticed. The Python version does not change them. README.md
# states the same numbers; update both when a generated test is added or removed.
EXPECTED_TESTS = {
    "background-examples-sqlite": 235,
    "background-examples-postgresql": 229,
    "background-minimal-sqlite": 172,
    "background-minimal-postgresql": 165,
    "arq-examples-sqlite": 256,
    "arq-examples-postgresql": 250,
    "arq-minimal-sqlite": 192,
    "arq-minimal-postgresql": 185,
}
TRACING_TESTS = 4
"""What `opentelemetry` adds to every flavour (tests/test_tracing.py)."""


def test_ruff_check(synced_project: Path, record: Callable[[str], None]) -> None:
    run(synced_project, "uv", "run", "--no-sync", "ruff", "check", ".")
    record("ruff")


def test_ruff_format_changes_nothing(synced_project: Path, record: Callable[[str], None]) -> None:
    run(synced_project, "uv", "run", "--no-sync", "ruff", "format", "--check", ".")
    record("format")


def test_mypy_strict(synced_project: Path, record: Callable[[str], None]) -> None:
    result = run(synced_project, "uv", "run", "--no-sync", "mypy")
    assert "Success: no issues found" in result.stdout
    record("mypy")


@pytest.mark.parametrize("variant", TESTED_VARIANTS, indirect=True)
def test_generated_tests_pass(
    synced_project: Path,
    variant: str,
    record: Callable[[str], None],
    request: pytest.FixtureRequest,
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
    flavour = "-".join(variant.split("-")[:3])
    expected = EXPECTED_TESTS[flavour]
    if VARIANTS[variant]["opentelemetry"]:
        expected += TRACING_TESTS
    assert passed == expected, f"{variant}: {summary}"
    record(f"pytest ({passed} passed)")


def test_readme_states_the_expected_test_counts() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    examples = EXPECTED_TESTS["background-examples-sqlite"], EXPECTED_TESTS["arq-examples-sqlite"]
    minimal = EXPECTED_TESTS["background-minimal-sqlite"], EXPECTED_TESTS["arq-minimal-sqlite"]
    sentence = (
        f"The default project has {examples[0]} tests (arq: {examples[1]}); without\n"
        f"examples, {minimal[0]} (arq: {minimal[1]}). Under PostgreSQL, six fewer (no relay "
        "lease,\nno SQLite write lock, no plan of SQLite's, no switch to WAL), seven without "
        "examples (no\nSQLite file to place); "
        f"with `opentelemetry`, {TRACING_TESTS} more."
    )
    assert sentence in readme
    for flavour, count in EXPECTED_TESTS.items():
        if "postgresql" in flavour:
            sqlite = EXPECTED_TESTS[flavour.replace("postgresql", "sqlite")]
            fewer = 6 if "examples" in flavour else 7
            assert count == sqlite - fewer, f"{flavour}: the README says {fewer} fewer than SQLite"
