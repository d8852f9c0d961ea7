"""The example flows under load: `uv run python -m bench.flows` (about 3 minutes).

For each backend, renders the default project (examples, SQLite), migrates its
database, starts the generated app in uvicorn (and, for arq, a worker started as
the README says), then loads each flow with wrk from 8 connections: POST /register
(a new email each time: each request hashes a password; meanwhile GET /health/live,
one request after another, says whether hashing stalls the other requests), POST /login (one user's
right password: each request verifies a hash), POST /order and POST /upload (a
small PNG). After each load it waits until every job the flow scheduled has ended,
and reports the flow's requests per second, p50 and p99, and the tasks completed
per second (jobs ended `succeeded`, over the time from the first job's creation to
the last one's end). Also part of `python -m bench.run`.

Options: --seconds S per flow (3).
"""

import argparse
import base64
import json
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.hashing import REGISTER_SCRIPT, health_latencies, serve_generated
from bench.run import RESULTS, fresh_logs, install, prepare, project_env, wait_for_jobs
from tests.redis_server import own_redis

CONNECTIONS = 8
USER = {"email": "bench-login@example.com", "name": "Bench", "password": "correct horse"}
# A 1x1 PNG: the upload route keeps any image/* file; without an image API, its task
# stores the file's size, type and sha256.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)

_JSON = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
SCRIPTS = {
    "POST /register": REGISTER_SCRIPT,
    "POST /login": _JSON + f"wrk.body = '{json.dumps(USER)}'\n",
    "POST /order": _JSON
    + """wrk.body = '{"email": "bob@example.com", "sku": "MUG-1", "quantity": 1}'\n""",
    "POST /upload": 'wrk.method = "POST"\n'
    + 'wrk.headers["Content-Type"] = "multipart/form-data; boundary=benchboundary"\n'
    + "wrk.body = '--benchboundary\\r\\n"
    + 'Content-Disposition: form-data; name=\\"file\\"; filename=\\"pixel.png\\"\\r\\n'
    + "Content-Type: image/png\\r\\n\\r\\n"
    + "".join(f"\\{byte}" for byte in PIXEL)
    + "\\r\\n--benchboundary--\\r\\n'\n",
}


def wrk_script(url: str, script: str, seconds: float) -> dict[str, float]:
    """wrk with a Lua `script` on `url`; req/s, p50 and p99 in ms."""
    from bench.run import _UNITS

    executable = shutil.which("wrk") or install("wrk", "wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        command = [executable, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "10s"]
        output = subprocess.run(
            [*command, "--latency", "-s", lua.name, url], capture_output=True, text=True
        ).stdout
    assert "Non-2xx" not in output, output
    result = {"rps": float(output.split("Requests/sec:")[1].split()[0])}
    for percentile in ("50", "99"):
        line = next(ln for ln in output.splitlines() if ln.strip().startswith(f"{percentile}%"))
        value = line.split()[1]
        unit = next(u for u in ("us", "ms", "s") if value.endswith(u))
        result[f"p{percentile}_ms"] = float(value.removesuffix(unit)) * _UNITS[unit]
    return result


def tasks_completed(database_url: str, since: str) -> dict[str, float]:
    """Jobs created at or after `since` (ISO) that succeeded, and how many a second."""
    path = database_url.partition(":///")[2]
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        rows = db.execute(
            "SELECT status, created_at, finished_at FROM jobs WHERE created_at >= ?", (since,)
        ).fetchall()
    done = [row for row in rows if row[0] == "succeeded"]
    assert len(done) == len(rows), f"not every job succeeded: {[row[0] for row in rows]}"
    if not done:
        return {"tasks": 0, "tasks_per_s": 0.0}
    first = min(datetime.fromisoformat(row[1]) for row in done)
    last = max(datetime.fromisoformat(row[2]) for row in done)
    return {"tasks": len(done), "tasks_per_s": len(done) / (last - first).total_seconds()}


@contextmanager
def worker(project: Path, env: dict[str, str], log: Path) -> Iterator[None]:
    """The arq worker as the README starts it."""
    command = [str(project / ".venv/bin/arq"), "acme_shop.worker.WorkerSettings"]
    command += ["--custom-log-dict", "acme_shop.worker.LOG_CONFIG"]
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=project, env=env, stdout=out, stderr=out)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


def measure_flows(
    project: Path, env: dict[str, str], logs: Path, seconds: float, *, arq: bool
) -> dict[str, dict[str, float]]:
    """Each flow's numbers on `project` (a rendered, synced project with examples);
    `env`: its environment, with its own SQLite database."""
    database_url = env["ACME_SHOP_DATABASE_URL"]
    results = {}
    with ExitStack() as stack:
        base = stack.enter_context(serve_generated(project, env, logs / "flows-api.log"))
        if arq:
            stack.enter_context(worker(project, env, logs / "flows-worker.log"))
        assert httpx.post(f"{base}/register", json=USER, timeout=10).status_code == 201
        wait_for_jobs(database_url)
        for flow, script in SCRIPTS.items():
            since = datetime.now(UTC).isoformat(sep=" ")
            time.sleep(0.01)
            with ThreadPoolExecutor(1) as pool:
                path = flow.split()[1]
                load = pool.submit(wrk_script, f"{base}{path}", script, seconds)
                if flow == "POST /register":  # does hashing stall the other requests?
                    time.sleep(0.2)  # let wrk connect first
                    health = health_latencies(base, seconds - 0.4)
                results[flow] = load.result()
            if flow == "POST /register":
                results[flow]["health_p99_ms"] = statistics.quantiles(health, n=100)[98]
            wait_for_jobs(database_url)
            results[flow] |= tasks_completed(database_url, since)
    return results


def table_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        f"Example flows: wrk -t1 -c{CONNECTIONS}, {results['seconds']:g} s each, SQLite",
        "",
        "| flow | backend | req/s | p50 ms | p99 ms | tasks | tasks/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, flows in results["flows"].items():
        for flow, r in flows.items():
            lines.append(
                f"| {flow} | {backend} | {r['rps']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                f"| {r['tasks']:.0f} | {r['tasks_per_s']:.1f} |"
            )
    lines.append("")
    for backend, flows in results["flows"].items():
        p99 = flows["POST /register"]["health_p99_ms"]
        lines.append(f"GET /health/live p99 under POST /register ({backend}): {p99:.1f} ms")
    return lines


def measure(
    projects: dict[str, Path], workdir: Path, logs: Path, seconds: float, redis_url: str
) -> dict[str, Any]:
    """The flows on each of `projects` (backend: rendered, synced project with examples)."""
    results: dict[str, Any] = {"seconds": seconds, "flows": {}}
    for backend, project in projects.items():
        env = project_env(
            ACME_SHOP_LOG_FORMAT="json",
            ACME_SHOP_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/flows-{backend}.db",
            ACME_SHOP_UPLOAD_DIR=str(workdir / f"uploads-{backend}"),
            ACME_SHOP_REDIS_URL=redis_url,
            ACME_SHOP_QUEUE_NAME=f"arq:flows-{backend}",
        )
        results["flows"][backend] = measure_flows(project, env, logs, seconds, arq=backend == "arq")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    logs = fresh_logs("logs-flows")
    with tempfile.TemporaryDirectory(prefix="bench-flows-") as tmp, own_redis() as redis_url:
        projects = {backend: prepare(Path(tmp), backend) for backend in ("background", "arq")}
        results = measure(projects, Path(tmp), logs, args.seconds, redis_url)
    text = "\n".join(table_lines(results))
    print(text)
    (RESULTS / "flows.json").write_text(json.dumps({**results, "table": text}, indent=2) + "\n")


if __name__ == "__main__":
    main()
