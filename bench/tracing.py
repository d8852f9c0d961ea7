"""What the `opentelemetry` answer costs: `uv run python -m bench.tracing` (about 3 minutes).

Renders background projects on SQLite (the bench's `generated` app, POST /noop: the
route logs and schedules a no-op task, which runs after the response) and loads each
with wrk, alternating them round by round:

- generated, before issue 14: the template at --before (default 788426c, before the
  one log format and the tracing option), opentelemetry not asked;
- generated, opentelemetry=no: this template, the default answer;
- generated, opentelemetry=yes, no endpoint: tracing installed but off (the default
  of such a project until OTEL_EXPORTER_OTLP_ENDPOINT is set);
- generated, opentelemetry=yes, exporting: every request, its SQL statements and its
  task traced, and the spans sent over OTLP/HTTP to a local endpoint that accepts them;
- bare FastAPI, for scale.

Options: --rounds N (3), --seconds S per wrk run (5), --before REF.
"""

import argparse
import json
import shutil
import subprocess
import tempfile
import warnings
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import copier

from bench.run import (
    BENCH,
    RESULTS,
    TEMPLATE,
    Databases,
    alternate,
    check_jobs,
    fresh_logs,
    loads,
    machine,
    project_env,
    serve_apps,
)
from tests.support import otlp_collector

BEFORE = "788426c"


def prepare(dst: Path, vcs_ref: str | None = None, **answers: Any) -> Path:
    """A rendered background project (at `vcs_ref` of the template, default the working
    tree) with the bench apps in it, synced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(TEMPLATE), dst, data=answers, defaults=True, quiet=True, vcs_ref=vcs_ref or "HEAD"
        )
    shutil.copy(BENCH / "project" / "bench_apps.py", dst / "bench_apps.py")
    subprocess.run(["uv", "sync", "--quiet"], cwd=dst, env=project_env(), check=True)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--before", default=BEFORE)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        logs = fresh_logs("logs-tracing")
        print("rendering and syncing the projects...", flush=True)
        before = prepare(workdir / "before" / "acme-shop", args.before)
        off = prepare(workdir / "off" / "acme-shop", opentelemetry=False)
        on = prepare(workdir / "on" / "acme-shop", opentelemetry=True)
        env = project_env(ACME_SHOP_LOG_FORMAT="json")
        endpoint = stack.enter_context(otlp_collector())
        exporting = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        databases = Databases(logs)
        names = {
            "bare FastAPI": ((off, "bare"), env),
            f"generated, before issue 14 ({args.before})": ((before, "generated"), env),
            "generated, opentelemetry=no": ((off, "generated"), env),
            "generated, opentelemetry=yes, no endpoint": ((on, "generated"), env),
            "generated, opentelemetry=yes, exporting": ((on, "generated"), exporting),
        }
        apps = {}
        for name, (server, server_env) in names.items():
            phase = "".join(c if c.isalnum() else "-" for c in name)
            apps |= serve_apps(stack, {name: server}, server_env, databases, logs, phase=phase)
        print("loading...", flush=True)
        results = alternate(args.rounds, loads(apps, "/noop", args))
        job_rows = check_jobs(apps)

    base = results["generated, opentelemetry=no"]["rps"]
    lines = [
        f"opentelemetry: wrk -t1 -c32 POST /noop, background, SQLite, median of {args.rounds} "
        f"rounds of {args.seconds:g} s, {datetime.now(UTC):%Y-%m-%d}",
        "",
        "| app | req/s | p50 ms | p99 ms | vs opentelemetry=no | ms per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        extra_ms = (1 / result["rps"] - 1 / base) * 1000
        lines.append(
            f"| {name} | {result['rps']:.0f} | {result['p50_ms']:.2f} | {result['p99_ms']:.2f} "
            f"| {result['rps'] / base:.2f}x | {extra_ms:+.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    record = {"machine": machine(), "results": results, "job rows": job_rows, "table": text}
    (RESULTS / "tracing.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
