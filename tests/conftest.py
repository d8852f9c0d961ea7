"""Render the template with copier's own API and run the rendered project's tools."""

import os
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import copier
import pytest

TEMPLATE = Path(__file__).resolve().parent.parent

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no-examples": {"include_examples": False},
    "arq": {"task_backend": "arq"},
    "arq-no-examples": {"task_backend": "arq", "include_examples": False},
}

Render = Callable[..., Path]


def render(dst: Path, **data: Any) -> Path:
    """`copier copy --defaults` of this checkout (uncommitted edits included) into `dst`."""
    with warnings.catch_warnings():
        # Copier says so when the template has no release tag yet; that is fine here.
        warnings.filterwarnings("ignore", message="No git tags found in template")
        copier.run_copy(str(TEMPLATE), dst, data=data, defaults=True, quiet=True)
    return dst


def run(
    project: Path, *command: str, timeout: float = 600, without: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run a command in a rendered project; fail the test with its output if it fails.

    `without`: environment variables to leave out."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", *without)}
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} failed in {project} ({result.returncode}):\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    )
    return result


@pytest.fixture(scope="session", params=list(VARIANTS), ids=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def synced_project(variant: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rendered project of each variant, its environment installed with `uv sync`."""
    project = render(tmp_path_factory.mktemp(variant) / "acme-shop", **VARIANTS[variant])
    run(project, "uv", "sync", "--quiet")
    return project
