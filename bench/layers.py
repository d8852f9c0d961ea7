"""The generated app layer by layer: `uv run python -m bench.layers` (about 3 minutes).

Renders a background project (SQLite) and serves each app of
`bench/project/bench_layers.py` in its own uvicorn, each generated one on a migrated
database of its own; loads POST /noop with wrk (-c32), alternating the apps round by
round, and reports, besides req/s and latency, the CPU time the uvicorn process spent
per request (user + system, all threads, from /proc/<pid>/stat; measured until the
jobs the requests scheduled have run), which a shared machine's load does not inflate
as much as it does the wall clock.

Options: --rounds N (3), --seconds S per wrk run (4).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.run import (
    BENCH,
    CONNECTIONS,
    RESULTS,
    UVICORN_FLAGS,
    Databases,
    fresh_logs,
    machine,
    noop_answers,
    prepare,
    project_env,
    wait_for_jobs,
    wrk,
)
from tests.redis_server import free_port
from tests.support import wait_for

LAYERS = {
    "bare FastAPI": "bare",
    "+ request-id middleware and request_finished": "middleware",
    "generated app (its routers), a route without dependencies": "app",
    "+ settings, resources and logger dependencies, the route's line": "dependencies",
    "+ SessionDep (no SQL)": "session",
    "+ TasksDep: the job row INSERTed and COMMITted, not run": "job_row",
    "+ the run after the response (as shipped)": "shipped",
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid`, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def served(
    project: Path, factory: str, env: dict[str, str], log: Path
) -> Iterator[tuple[str, int]]:
    """`uvicorn bench_layers:<factory>` (the venv's, so that its pid is uvicorn's);
    yields its URL and pid."""
    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen(
            [str(project / ".venv/bin/uvicorn"), f"bench_layers:{factory}", "--factory",
             *UVICORN_FLAGS, "--port", str(port)],
            cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: noop_answers(base), 30, f"bench_layers:{factory}")
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def load(
    base: str, pid: int, database_url: str | None, seconds: float
) -> Callable[[], dict[str, float]]:
    def run() -> dict[str, float]:
        before = cpu_seconds(pid)
        result = wrk(f"{base}/noop", seconds=seconds, connections=CONNECTIONS)
        if database_url:
            wait_for_jobs(database_url)
        result["cpu_us"] = (cpu_seconds(pid) - before) / result["requests"] * 1e6
        return result

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    logs = fresh_logs("logs-layers")
    with tempfile.TemporaryDirectory(prefix="bench-layers-") as tmp, ExitStack() as stack:
        project = prepare(Path(tmp), "background")
        shutil.copy(BENCH / "project" / "bench_layers.py", project / "bench_layers.py")
        env = project_env(ACME_SHOP_LOG_FORMAT="json")
        databases = Databases(logs)
        runs = {}
        for name, factory in LAYERS.items():
            if factory in ("bare", "middleware"):
                app_env = env
            else:
                app_env = databases.new(project, env, factory)
            # Its rows are never run: no relay, and nothing to wait for after a load.
            owed = factory != "job_row"
            if not owed:
                app_env = {**app_env, "ACME_SHOP_RELAY_INTERVAL_SECONDS": "3600"}
            log = logs / f"{factory}.log"
            base, pid = stack.enter_context(served(project, factory, app_env, log))
            database_url = app_env.get("ACME_SHOP_DATABASE_URL") if owed else None
            runs[name] = load(base, pid, database_url, args.seconds)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        for round_number in range(args.rounds):
            order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
            for name in order:
                samples[name].append(runs[name]())
    results = {
        name: {key: statistics.median(s[key] for s in runs_) for key in runs_[0]}
        for name, runs_ in samples.items()
    }
    bare = results["bare FastAPI"]["rps"]
    lines = [
        f"Layer by layer: wrk -t1 -c{CONNECTIONS} POST /noop, background, SQLite, median of "
        f"{args.rounds} rounds of {args.seconds} s, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "| app | req/s | p50 ms | p99 ms | CPU µs per request | vs bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['cpu_us']:.0f} | {r['rps'] / bare:.2f}x |"
        )
    text = "\n".join(lines)
    print(text)
    record: dict[str, Any] = {"machine": machine(), "results": results, "table": text}
    (RESULTS / "layers.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
