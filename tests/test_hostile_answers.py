"""Whatever a person types: accepted answers render valid files, refused ones get a sentence."""

import ast
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import render, run_gates

SPECIALS = [
    '"',
    "'",
    "\\",
    "\\n",
    "\\u0041",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "${{",
    "{{ x }}",
    "{% if x %}",
    "${{ secrets.TOKEN }}",
    '"""',
    "'''",
    "#",
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "&",
    "*",
    "!",
    "|",
    ">",
    "%",
    "@",
    "`",
    "=",
    ",",
    "~",
    "---",
    "...",
    "null",
    "true",
    "<",
    "$",
    "\n",
    "\t",
    "\r",
    "\x00",
    "\x7f",
    "\x85",
    "é",
    "ß",
    "☃",
    "😀",
    "\u2028",
    "\ufeff",
    "\u202e",
    " ",
    "  ",
    "a",
    "acme",
    "-",
    "_",
    ".",
    "1",
]
hostile_text = st.lists(
    st.one_of(st.sampled_from(SPECIALS), st.text(max_size=4)), min_size=0, max_size=8
).map("".join)
hostile_answers = st.fixed_dictionaries(
    {},
    optional={
        "project_name": hostile_text,
        "project_slug": st.one_of(
            hostile_text, st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
        ),
        "package_name": st.one_of(
            hostile_text, st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
        ),
        "description": hostile_text,
        "author_name": hostile_text,
        "author_email": st.one_of(hostile_text, st.emails()),
    },
)
REFUSAL = re.compile(r"^(Validation error for question|Invalid choice for) '\w+': \S.{10,}", re.S)
OUTCOMES: dict[str, int] = {"accepted": 0, "refused": 0}


def check_rendered(project: Path, answers: dict[str, Any]) -> None:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    if "description" in answers:
        assert pyproject["project"]["description"] == answers["description"]
    if "author_name" in answers:
        assert pyproject["project"]["authors"][0]["name"] == answers["author_name"]
    if "author_email" in answers:
        assert pyproject["project"]["authors"][0]["email"] == answers["author_email"]
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert {key: recorded[key] for key in answers} == answers
    package = recorded["package_name"]
    for path in project.rglob("*.py"):
        ast.parse(path.read_text(), filename=str(path))
    settings_py = (project / "src" / package / "settings.py").read_text()
    app_name = re.search(r"app_name: str = (.+)", settings_py)
    assert app_name is not None
    assert ast.literal_eval(app_name[1]) == recorded["project_name"]


# The summary test reads what the property test counted: conftest.IN_ORDER keeps both on
# one pytest-xdist worker, in this order.
@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(answers=hostile_answers)
def test_hostile_answers_render_valid_files_or_are_refused(answers: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        outcome = render_or_refusal(Path(workdir) / "out", answers)
        if isinstance(outcome, str):
            assert REFUSAL.match(outcome), f"not a validator's sentence: {outcome}"
            OUTCOMES["refused"] += 1
        else:
            check_rendered(outcome, answers)
            OUTCOMES["accepted"] += 1


def render_or_refusal(dst: Path, answers: dict[str, Any]) -> Path | str:
    """The rendered project, or the message copier refused the answers with."""
    try:
        return render(dst, **answers)
    except ValueError as refused:
        return str(refused)


def test_hostile_examples_were_both_accepted_and_refused() -> None:
    """Runs after the property test: both outcomes were exercised, 200 examples in all."""
    print(f"hostile answers: {OUTCOMES}")
    assert OUTCOMES["accepted"] >= 20
    assert OUTCOMES["refused"] >= 20
    assert sum(OUTCOMES.values()) >= 200


GATED_SAMPLES = [
    {
        "project_name": 'Ünï "Quoted" \\ {{ x }} {% if y %} ${{ a.B }}',
        "description": "a: b # c [d] {e} 'f' \"g\" \\h \\u0041 — ☃ 😀 \u2028 '''\"\"\"",
        "author_name": 'O\'Brien "The" {{Author}} \\',
        "package_name": "hostile_one",
    },
    {
        "project_name": "---",
        "project_slug": "null",
        "description": "true",
        "author_name": "~",
        "package_name": "yes",
        "task_backend": "arq",
    },
]


@pytest.mark.parametrize(
    "answers", GATED_SAMPLES, ids=["quotes-jinja-unicode", "yaml-keywords-arq"]
)
def test_hostile_samples_pass_the_gates(tmp_path: Path, answers: dict[str, Any]) -> None:
    project = render(tmp_path / "out", **answers)

    check_rendered(project, {k: v for k, v in answers.items() if k != "task_backend"})
    assert "failed" not in run_gates(project)
