"""What the template costs: `uv run python -m bench.run` (about 6 minutes).

Renders the projects it needs, starts real processes on 127.0.0.1 (uvicorn,
arq workers, a redis-server on its own port), measures, prints a table and
writes it as JSON to bench/results/ (git-ignored). Every ratio compares
numbers taken in this run, A and B alternated round by round, so that the
noise of a shared machine falls on both sides alike.

Options: --rounds N (3), --seconds S per wrk run (5), --jobs N for the worker (2000),
--quick (1 round, 2 s, 300 jobs, 2 copies: a smoke run, its numbers mean little).
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import copier
import httpx

from tests.redis_server import free_port, own_redis

TEMPLATE = Path(__file__).resolve().parent.parent
BENCH = TEMPLATE / "bench"
RESULTS = BENCH / "results"
COPIER = Path(sys.executable).parent / "copier"
UVICORN_FLAGS = ("--host", "127.0.0.1", "--no-access-log", "--log-level", "warning")
CONNECTIONS = 32


# --- processes ------------------------------------------------------------------------------


def install(command: str, package: str) -> str:
    """Install a Debian package that provides `command` (the bench needs wrk and Redis)."""
    print(f"installing {package} (apt-get)...", flush=True)
    apt = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(apt, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=True)
        subprocess.run(apt, capture_output=True, check=True)
    found = shutil.which(command)
    assert found, f"{package} installed but {command} not found"
    return found


def project_env(**extra: str) -> dict[str, str]:
    # PYTHONDONTWRITEBYTECODE (set on some CI machines) would recompile every import in
    # every process: measure Python as users run it, with bytecode cached.
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    }
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra)
    return env


@contextmanager
def serve(project: Path, factory: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """`uvicorn bench_apps:<factory> --factory` in `project`; yields its base URL."""
    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen(
            [
                "uv",
                "run",
                "--no-sync",
                "uvicorn",
                f"bench_apps:{factory}",
                "--factory",
                *UVICORN_FLAGS,
                "--port",
                str(port),
            ],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, f"uvicorn {factory} exited:\n{log.read_text()[-3000:]}"
            try:
                if httpx.post(f"{base}/noop", timeout=2).status_code < 300:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"uvicorn {factory} did not answer; see {log}"
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- wrk ------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, *, seconds: float, connections: int, close: bool = False) -> dict[str, float]:
    """POST `url` with wrk; requests per second and latency percentiles in ms."""
    executable = shutil.which("wrk") or install("wrk", "wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
    command = [executable, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["--latency", "-s", script.name, url]
    if close:
        command[1:1] = ["-H", "Connection: close"]
    try:
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])}  # type: ignore[index]
    for percentile in ("50", "99"):
        match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        assert match, output
        result[f"p{percentile}_ms"] = float(match[1]) * _UNITS[match[2]]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    assert errors is None, f"{url}: {errors[0]}"
    result["requests"] = float(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    return result


def alternate(
    rounds: int, contenders: dict[str, Callable[[], dict[str, float]]]
) -> dict[str, dict[str, Any]]:
    """Run each contender once per round, in turn; the median of each measure."""
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for round_number in range(rounds):
        order = list(contenders)
        if round_number % 2:
            order.reverse()  # A B C D, then D C B A: no side always goes first
        for name in order:
            samples[name].append(contenders[name]())
    return {
        name: {
            **{key: statistics.median(s[key] for s in runs) for key in runs[0]},
            "runs": runs,
        }
        for name, runs in samples.items()
    }


# --- the projects ---------------------------------------------------------------------------


def render(dst: Path, **answers: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        copier.run_copy(str(TEMPLATE), dst, data=answers, defaults=True, quiet=True)
    return dst


def prepare(workdir: Path, backend: str) -> Path:
    """A rendered project with the bench apps in it, its environment synced."""
    project = render(workdir / backend / "acme-shop", task_backend=backend)
    for name in ("bench_apps.py", "bench_worker.py", "bench_enqueue.py"):
        shutil.copy(BENCH / "project" / name, project / name)
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=project_env(), check=True)
    return project


# --- the measures ---------------------------------------------------------------------------


def measure_endpoints(
    projects: dict[str, Path], env: dict[str, str], logs: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Requests per second of four endpoints, each in its own uvicorn, side by side."""
    servers = {
        "bare FastAPI": (projects["background"], "bare"),
        "generated, background backend": (projects["background"], "generated"),
        "raw arq enqueue_job": (projects["arq"], "raw_arq"),
        "generated QueueRedis.enqueue_job": (projects["arq"], "fast_enqueue"),
        "generated, arq backend": (projects["arq"], "generated"),
    }
    with (
        serve(*servers["bare FastAPI"], env, logs / "bare.log") as bare,
        serve(*servers["generated, background backend"], env, logs / "bg.log") as background,
        serve(*servers["raw arq enqueue_job"], env, logs / "raw-arq.log") as raw_arq,
        serve(*servers["generated QueueRedis.enqueue_job"], env, logs / "fast.log") as fast,
        serve(*servers["generated, arq backend"], env, logs / "arq.log") as arq,
    ):
        bases = dict(zip(servers, (bare, background, raw_arq, fast, arq), strict=True))
        return alternate(
            args.rounds,
            {
                name: (
                    lambda base=base: wrk(
                        f"{base}/noop", seconds=args.seconds, connections=CONNECTIONS
                    )
                )
                for name, base in bases.items()
            },
        )


def measure_slow_tasks(
    projects: dict[str, Path], env: dict[str, str], logs: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Latency while every request schedules a 2-second task (background backend)."""
    project = projects["background"]
    seconds = max(args.seconds, 6)
    with (
        serve(project, "bare", env, logs / "bare-sleep.log") as bare,
        serve(project, "generated", env, logs / "bg-sleep.log") as background,
        serve(project, "generated_gc_off", env, logs / "bg-gc-off.log") as gc_off,
    ):
        contenders = {}
        for close in (False, True):
            mode = "new connection per request" if close else "keep-alive"
            for name, base in (("bare FastAPI", bare), ("generated, background", background)):
                contenders[f"{name} ({mode})"] = lambda base=base, close=close: wrk(
                    f"{base}/sleep", seconds=seconds, connections=16, close=close
                )
        # The same generated endpoint with a no-op task: what the 2 s tasks add.
        contenders["generated, background, no-op task (keep-alive)"] = lambda: wrk(
            f"{background}/noop", seconds=seconds, connections=16
        )
        # A diagnostic: each pending task keeps its request alive, and the collector scans them.
        contenders["generated, background, garbage collector off (keep-alive)"] = lambda: wrk(
            f"{gc_off}/sleep", seconds=seconds, connections=16
        )
        return alternate(args.rounds, contenders)


def measure_worker(
    project: Path, env: dict[str, str], logs: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """N no-op jobs drained by the generated worker and by a raw arq Worker."""

    def drain(kind: str) -> dict[str, float]:
        result_file = logs / f"worker-{kind}.json"
        with (logs / f"worker-{kind}.log").open("ab") as out:
            subprocess.run(
                [
                    "uv",
                    "run",
                    "--no-sync",
                    "python",
                    "bench_worker.py",
                    kind,
                    str(args.jobs),
                    str(result_file),
                ],
                cwd=project,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=300,
            )
        seconds = json.loads(result_file.read_text())["seconds"]
        return {"jobs_per_s": args.jobs / seconds, "seconds": seconds}

    return alternate(
        args.rounds,
        {"generated worker": lambda: drain("generated"), "raw arq Worker": lambda: drain("raw")},
    )


def measure_enqueue(
    project: Path, env: dict[str, str], logs: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Enqueues per second without HTTP: 64 concurrent callers on one client."""

    def enqueue(kind: str) -> dict[str, float]:
        result_file = logs / f"enqueue-{kind}.json"
        command = ["uv", "run", "--no-sync", "python", "bench_enqueue.py", kind]
        subprocess.run(
            [*command, str(args.seconds), str(result_file)],
            cwd=project,
            env=env,
            check=True,
            timeout=120,
        )
        return {"jobs_per_s": json.loads(result_file.read_text())["jobs_per_s"]}

    return alternate(
        args.rounds,
        {
            "arq ArqRedis.enqueue_job": lambda: enqueue("arq"),
            "one script per job, not coalesced": lambda: enqueue("script"),
            "generated QueueRedis.enqueue_job": lambda: enqueue("generated"),
        },
    )


def measure_copier(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`copier copy --defaults` (the CLI, and `run_copy` in process); copy -> sync -> tests."""
    cli, in_process = [], []
    for attempt in range(-1, args.copies):  # attempt -1 warms the bytecode cache
        started = time.perf_counter()
        subprocess.run(
            [
                str(COPIER),
                "copy",
                "--defaults",
                "--quiet",
                str(TEMPLATE),
                str(workdir / f"cli-{attempt}"),
            ],
            check=True,
            capture_output=True,
            env=project_env(),
        )
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        render(workdir / f"api-{attempt}")
        if attempt >= 0:
            cli.append(elapsed)
            in_process.append(time.perf_counter() - started)

    steps: dict[str, float] = {}
    started = time.perf_counter()
    project = render(workdir / "green" / "acme-shop")
    steps["copier copy"] = time.perf_counter() - started
    for name, command in (
        ("uv sync", ["uv", "sync", "--quiet"]),
        ("pytest", ["uv", "run", "--no-sync", "pytest", "-q", "-p", "no:cacheprovider"]),
    ):
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=project, env=project_env(), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        steps[name] = time.perf_counter() - started
    steps["total"] = sum(steps.values())
    return {
        "copier copy CLI, median s": statistics.median(cli),
        "copier run_copy in process, median s": statistics.median(in_process),
        "cli_runs": cli,
        "in_process_runs": in_process,
        "copy, sync, tests green": steps,
        "tests": done.stdout.strip().splitlines()[-1],
    }


# --- the table ------------------------------------------------------------------------------


def jobs_table(
    title: str, columns: tuple[str, str], measured: dict[str, Any], *, baseline: str
) -> list[str]:
    """A jobs/s table, each row also as a ratio to the `baseline` row."""
    reference = measured[baseline]["jobs_per_s"]
    rows = [
        f"| {name} | {m['jobs_per_s']:.0f} | {m['jobs_per_s'] / reference:.2f}x |"
        for name, m in measured.items()
    ]
    return [title, f"| {columns[0]} | jobs/s | {columns[1]} |", "| --- | ---: | ---: |", *rows, ""]


def hashing_table_lines(result: dict[str, Any]) -> list[str]:
    from bench.hashing import table_lines  # bench.hashing imports this module

    return table_lines(result)


def table(results: dict[str, Any]) -> str:
    lines = []
    endpoints = results["endpoints"]
    bare = endpoints["bare FastAPI"]["rps"]
    raw = endpoints["raw arq enqueue_job"]["rps"]
    lines.append(f"Endpoints: wrk -t1 -c{CONNECTIONS}, POST, median of {results['rounds']} rounds")
    lines.append("| endpoint | req/s | p50 ms | p99 ms | vs bare | vs raw arq |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, m in endpoints.items():
        vs_raw = f"{m['rps'] / raw:.2f}x" if "arq" in name or "Queue" in name else ""
        lines.append(
            f"| {name} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
            f"| {m['rps'] / bare:.2f}x | {vs_raw} |"
        )
    lines.append("")
    lines.append("Every request schedules a 2-second task: wrk -t1 -c16")
    lines.append("| endpoint | req/s | p50 ms | p99 ms |")
    lines.append("| --- | ---: | ---: | ---: |")
    for name, m in results["slow_tasks"].items():
        lines.append(f"| {name} | {m['rps']:.1f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    lines.append("")
    if "hashing" in results:
        lines += [*hashing_table_lines(results["hashing"]), ""]
    lines += jobs_table(
        "Enqueue without HTTP: 64 concurrent callers, one client",
        ("enqueue", "vs arq"),
        results["enqueue"],
        baseline="arq ArqRedis.enqueue_job",
    )
    lines += jobs_table(
        f"Worker: {results['jobs']} no-op jobs, burst, max_jobs 10, JSON logs",
        ("worker", "vs raw arq"),
        results["worker"],
        baseline="raw arq Worker",
    )
    c = results["copier"]
    steps = c["copy, sync, tests green"]
    lines.append("| copier | seconds |")
    lines.append("| --- | ---: |")
    cli, in_process = c["copier copy CLI, median s"], c["copier run_copy in process, median s"]
    lines.append(f"| `copier copy --defaults` CLI, median of {len(c['cli_runs'])} | {cli:.2f} |")
    lines.append(f"| `copier.run_copy` in process, median | {in_process:.2f} |")
    lines.append(
        f"| copy {steps['copier copy']:.1f} + uv sync {steps['uv sync']:.1f} "
        f"+ tests {steps['pytest']:.1f} ({c['tests']}) | {steps['total']:.1f} |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from bench.hashing import measure_hashing  # bench.hashing imports this module

    if args.quick:
        args.rounds, args.seconds, args.jobs, args.copies = 1, 2, 300, 2

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        logs = workdir / "logs"
        logs.mkdir()
        if not shutil.which("redis-server"):
            install("redis-server", "redis-server")
        with own_redis() as redis_url:
            print("rendering and syncing the projects...", flush=True)
            projects = {backend: prepare(workdir, backend) for backend in ("background", "arq")}
            env = project_env(
                ACME_SHOP_LOG_FORMAT="json",
                ACME_SHOP_REDIS_URL=redis_url,
                ACME_SHOP_QUEUE_NAME="arq:bench",
                ACME_SHOP_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/app.db",
            )
            # As a deploy does: the schema first, then the processes (both projects share it).
            migrate = [str(projects["arq"] / ".venv/bin/acme_shop"), "migrate"]
            subprocess.run(migrate, env=env, check=True, stdout=subprocess.DEVNULL)
            results: dict[str, Any] = {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "rounds": args.rounds,
                "seconds": args.seconds,
                "jobs": args.jobs,
            }
            print("endpoints...", flush=True)
            results["endpoints"] = measure_endpoints(projects, env, logs, args)
            print("2-second tasks...", flush=True)
            results["slow_tasks"] = measure_slow_tasks(projects, env, logs, args)
            print("password hashing...", flush=True)
            results["hashing"] = measure_hashing(
                projects["background"],
                {**env, "ACME_SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/hashing.db"},
                logs / "hashing.log",
                min(args.seconds, 3),
            )
            print("enqueue...", flush=True)
            results["enqueue"] = measure_enqueue(projects["arq"], env, logs, args)
            print("worker...", flush=True)
            results["worker"] = measure_worker(projects["arq"], env, logs, args)
        print("copier...", flush=True)
        results["copier"] = measure_copier(workdir, args)

    text = table(results)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps({**results, "table": text}, indent=2) + "\n")
    print(f"written: {RESULTS / 'latest.json'}")


def machine() -> dict[str, Any]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "network": "loopback (127.0.0.1)",
    }


if __name__ == "__main__":
    main()
