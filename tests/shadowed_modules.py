"""The module names `package_name` must not take, kept in copier.yml's validator.

Copier validators are Jinja, without Python, so the list is written out in copier.yml.
This module computes it (the standard library of every Python the template supports,
and the import names of every distribution a generated project can install, dev tools
included) and writes it back; `tests/test_validators.py` fails when the list misses one.

    uv run python -m tests.shadowed_modules     # render, sync, recompute, rewrite
"""

import json
import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

COPIER_YML = Path(__file__).parents[1] / "copier.yml"
PYTHONS = ("3.11", "3.12", "3.13")
# Together these install every dependency any answer can add (docker and github_actions
# add none; the minimal flavours install a subset of these).
FULL_VARIANTS = (
    {
        "task_backend": "arq",
        "database": "postgresql",
        "include_examples": True,
        "opentelemetry": True,
    },
    {"task_backend": "background", "database": "sqlite", "include_examples": True},
)
PROJECT_OWN = ("app", "test", "tests")
"""Names the generated project uses itself (its `tests` package, the `app` of its
fixtures) and the standard library's `test` package, absent from stdlib_module_names."""
RENDERED_PACKAGE = "acme_shop"
IMPORTABLE = re.compile(r"^[a-z][a-z0-9_]*$")
LIST_IN_VALIDATOR = re.compile(
    r"(\{% elif package_name in \[)([^\]]*)(\] %\}\"\{\{ package_name \}\}\" would shadow)"
)

_PRINT_STDLIB = "import json, sys; print(json.dumps(sorted(sys.stdlib_module_names)))"
_PRINT_IMPORT_NAMES = (
    "import importlib.metadata as m, json; print(json.dumps(sorted(m.packages_distributions())))"
)


def importable(names: set[str]) -> set[str]:
    """The names a package_name could take (the validator refuses the rest already)."""
    return {name for name in names if IMPORTABLE.match(name)}


def stdlib_names() -> set[str]:
    """sys.stdlib_module_names of this Python and of every supported one uv finds."""
    names = set(sys.stdlib_module_names)
    for version in PYTHONS:
        found = subprocess.run(
            ["uv", "python", "find", "--no-python-downloads", version],
            capture_output=True,
            text=True,
        )
        if found.returncode == 0:
            printed = subprocess.run(
                [found.stdout.strip(), "-c", _PRINT_STDLIB],
                capture_output=True,
                text=True,
                check=True,
            )
            names |= set(json.loads(printed.stdout))
    return importable(names)


def import_names_of(project: Path) -> set[str]:
    """The top-level import names of every distribution installed in a synced project."""
    printed = subprocess.run(
        ["uv", "run", "--no-sync", "python", "-c", _PRINT_IMPORT_NAMES],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    return importable(set(json.loads(printed.stdout))) - {RENDERED_PACKAGE}


def dependency_import_names(workdir: Path) -> set[str]:
    """Render and sync each full variant in `workdir`; their installed import names."""
    import copier

    names: set[str] = set()
    for number, data in enumerate(FULL_VARIANTS):
        project = workdir / str(number) / "acme-shop"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the template's work tree may be dirty: fine
            copier.run_copy(
                str(COPIER_YML.parent),
                project,
                data=data,
                defaults=True,
                quiet=True,
                vcs_ref="HEAD",
            )
        subprocess.run(["uv", "sync", "--quiet"], cwd=project, check=True)
        names |= import_names_of(project)
    return names


def listed_names(copier_yml: str) -> set[str]:
    """The names copier.yml's package_name validator refuses as shadowing."""
    match = LIST_IN_VALIDATOR.search(copier_yml)
    assert match, "copier.yml: the package_name shadowing list was not found"
    return set(re.findall(r"'([^']+)'", match.group(2)))


def with_names(copier_yml: str, names: set[str]) -> str:
    listed = ", ".join(f"'{name}'" for name in sorted(names))
    return LIST_IN_VALIDATOR.sub(lambda match: match.group(1) + listed + match.group(3), copier_yml)


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        names = stdlib_names() | dependency_import_names(Path(workdir)) | set(PROJECT_OWN)
    COPIER_YML.write_text(with_names(COPIER_YML.read_text(), names))
    print(f"copier.yml: {len(names)} module names package_name may not take")


if __name__ == "__main__":
    main()
