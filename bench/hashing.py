"""Does password hashing stall the app? `uv run python -m bench.hashing` (about 15 seconds).

Renders the template (background, sqlite, examples), migrates its database, starts the
generated app in uvicorn, and while wrk POSTs /register from 8 connections (each
registration hashes a password), a client GETs /health one request after another: its
p99 says how long a request unrelated to hashing waits. Also part of `python -m bench.run`.

Options: --seconds S of load (3), --vcs-ref REF to measure an older commit of the template.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import copier
import httpx

from bench.run import TEMPLATE, install, project_env, serve

REGISTER_CONNECTIONS = 8

# Each request registers a new email: a repeated one would answer 409 before hashing.
REGISTER_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  local body = string.format(
    '{"email": "u%d-%d@example.com", "name": "U", "password": "correct horse"}',
    counter, math.random(1, 1000000000))
  return wrk.format(nil, nil, nil, body)
end
"""


@contextmanager
def serve_generated(project: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """The generated app (`create_app`) in uvicorn, after `migrate`; yields its base URL."""
    subprocess.run(
        [str(project / ".venv" / "bin" / "acme_shop"), "migrate"],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
    )
    with serve(
        project, "create_app", env, log, module="acme_shop.main", ready=health_answers
    ) as base:
        yield base


# The liveness route; templates before the live/ready split (`--vcs-ref`) answer /health.
HEALTH_PATHS = ("/health/live", "/health")


def health_path(base: str) -> str | None:
    """The health route that answers 200 at `base` (the app's URL), if one does yet."""
    for path in HEALTH_PATHS:
        try:
            if httpx.get(f"{base}{path}", timeout=2).status_code == 200:
                return path
        except httpx.TransportError:
            return None
    return None


def health_answers(base: str) -> bool:
    return health_path(base) is not None


def health_latencies(base: str, seconds: float) -> list[float]:
    """GET the health route at `base`, one request after another for `seconds`; each
    latency in ms."""
    latencies = []
    path = health_path(base)
    assert path is not None, f"no health route answers at {base}"
    with httpx.Client(base_url=base, timeout=10) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            assert client.get(path).status_code == 200
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def measure_hashing(
    project: Path, env: dict[str, str], log: Path, seconds: float
) -> dict[str, Any]:
    """/health latency while /register is under load, and /register's throughput.

    `project`: a rendered, synced project with examples; `env`: its environment (the
    database URL); `log`: where uvicorn writes; `seconds`: how long the load lasts.
    """
    executable = shutil.which("wrk") or install("wrk", "wrk")
    with serve_generated(project, env, log) as base:
        idle = health_latencies(base, 1)
        with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
            script.write(REGISTER_SCRIPT)
            script.flush()
            command = [executable, "-t1", f"-c{REGISTER_CONNECTIONS}", f"-d{seconds:g}s"]
            command += ["--timeout", "10s", "-s", script.name, f"{base}/register"]
            load = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.2)  # let wrk connect before measuring
            loaded = health_latencies(base, seconds - 0.4)
            output, _ = load.communicate(timeout=seconds + 30)
    assert "Non-2xx" not in output, output
    return {
        "register_rps": float(output.split("Requests/sec:")[1].split()[0]),
        "health_p99_ms_idle": percentile(idle, 99),
        "health_p50_ms": percentile(loaded, 50),
        "health_p99_ms": percentile(loaded, 99),
        "health_requests": len(loaded),
    }


def percentile(latencies: list[float], p: int) -> float:
    """The `p`th percentile (1..99) of `latencies`, in their unit."""
    return statistics.quantiles(latencies, n=100)[p - 1]


def table_lines(result: dict[str, Any]) -> list[str]:
    """The bench table's lines for `result`, what `measure_hashing` returned."""
    return [
        f"Password hashing: wrk -t1 -c{REGISTER_CONNECTIONS} POST /register, meanwhile GET /health",
        f"  /register: {result['register_rps']:.0f} req/s; /health p50 "
        f"{result['health_p50_ms']:.1f} ms, p99 {result['health_p99_ms']:.1f} ms "
        f"(p99 without load: {result['health_p99_ms_idle']:.1f} ms)",
    ]


def prepare(workdir: Path, vcs_ref: str | None) -> Path:
    """A project rendered in `workdir` from the template at `vcs_ref` (None: as it is on
    disk), background and sqlite with the examples, its environment synced."""
    project = workdir / "acme-shop"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(
            str(TEMPLATE),
            project,
            data={"task_backend": "background", "database": "sqlite"},
            vcs_ref=vcs_ref or "HEAD",  # HEAD with the work tree; copier alone takes the latest tag
            defaults=True,
            quiet=True,
        )
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=project_env(), check=True)
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--vcs-ref", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hashing-") as tmp:
        workdir = Path(tmp)
        project = prepare(workdir, args.vcs_ref)
        env = project_env(
            ACME_SHOP_LOG_LEVEL="WARNING",
            ACME_SHOP_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/app.db",
        )
        result = measure_hashing(project, env, workdir / "uvicorn.log", args.seconds)
    print("\n".join(table_lines(result)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
