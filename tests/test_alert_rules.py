"""The generated alert rules, checked and unit-tested by Prometheus's own `promtool`: each
alert fires when its condition has held for its `for`, and not before."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import render

# Two hours of a fictitious API, one sample a minute: the oldest due job waits 400 s from
# minute 4; one welcome email in six fails for good; the runner is gone from minute 4.
SERIES = [
    {"series": 'jobs_oldest_due_seconds{job="api"}', "values": "0x4 400x20"},
    {
        "series": 'task_tries_total{job="api", task="send_welcome_email", outcome="succeeded"}',
        "values": "0+10x30",
    },
    {
        "series": 'task_tries_total{job="api", task="send_welcome_email", outcome="failed"}',
        "values": "0+2x30",
    },
    {
        "series": 'task_tries_total{job="api", task="process_event", outcome="succeeded"}',
        "values": "0+10x30",
    },
    {"series": 'task_runner_up{job="api"}', "values": "1x4 0x20"},
]
# What each alert's description reads with those series, where it quotes them.
QUOTED = {
    "{{ $value | humanizeDuration }}": "6m 40s",
    "{{ $labels.task }}": "send_welcome_email",
    "{{ $value | humanizePercentage }}": "16.67%",
}
# alert -> (a time it must not fire yet, a time it must fire, its extra labels)
EXPECTED = {
    "JobsBacklogOld": ("8m", "10m", {}),
    "TaskFailuresHigh": ("10m", "25m", {"task": "send_welcome_email"}),
    "NoTaskRunner": ("5m", "7m", {}),
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool not found: install Prometheus's tools (Debian: apt-get install "
            "prometheus; bash .ci/run does it)"
        )
    return found


@pytest.mark.parametrize("task_backend", ["background", "arq"])
def test_each_alert_fires_after_its_condition_held_and_not_before(
    tmp_path: Path, task_backend: str
) -> None:
    project = render(tmp_path / "acme-shop", task_backend=task_backend)
    rules_file = project / "prometheus/alerts.yml"
    checked = subprocess.run(
        [promtool(), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 3 rules found" in checked.stdout

    rules = {
        rule["alert"]: rule
        for group in yaml.safe_load(rules_file.read_text())["groups"]
        for rule in group["rules"]
    }
    assert set(rules) == set(EXPECTED)
    cases = []
    for alert, (quiet, firing, labels) in EXPECTED.items():
        annotations = dict(rules[alert]["annotations"])
        for placeholder, text in QUOTED.items():
            annotations = {k: v.replace(placeholder, text) for k, v in annotations.items()}
        fired = {"exp_labels": rules[alert]["labels"] | labels, "exp_annotations": annotations}
        cases.append({"eval_time": quiet, "alertname": alert, "exp_alerts": []})
        cases.append({"eval_time": firing, "alertname": alert, "exp_alerts": [fired]})
    unit_tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": SERIES, "alert_rule_test": cases}],
    }
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(unit_tests))

    tested = subprocess.run(
        [promtool(), "test", "rules", str(tmp_path / "alerts_test.yml")],
        capture_output=True,
        text=True,
    )

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
