"""What the template costs: `uv run python -m bench.run` (about 11 minutes).

Renders the projects it needs, starts real processes on 127.0.0.1 (uvicorn,
arq workers, a redis-server on its own port), measures, prints a table and
writes it as JSON to bench/results/ (git-ignored; the processes' output and the
SQLite databases in bench/results/logs/). Every ratio compares numbers taken in
this run, A and B alternated round by round, so that the noise of a shared
machine falls on both sides alike.

Options: --rounds N (3), --seconds S per wrk run (5), --jobs N for the worker (2000),
--quick (1 round, 2 s, 300 jobs, 2 copies: a smoke run, its numbers mean little),
--no-postgresql (skip the outbox rows on PostgreSQL: `TEST_DATABASE_URL` when it
answers, else a throwaway server), --table JSON (print the table of an earlier run).
"""

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import copier
import httpx
import psycopg

from tests.postgres_server import create_database, running_postgres
from tests.redis_server import free_port, own_redis

TEMPLATE = Path(__file__).resolve().parent.parent
BENCH = TEMPLATE / "bench"
RESULTS = BENCH / "results"
COPIER = Path(sys.executable).parent / "copier"
UVICORN_FLAGS = ("--host", "127.0.0.1", "--no-access-log", "--log-level", "warning")
CONNECTIONS = 32
BACKENDS = ("background", "arq")


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


def noop_answers(base: str) -> bool:
    """Whether the bench app at `base` (its URL) answers POST /noop with a 2xx."""
    try:
        return httpx.post(f"{base}/noop", timeout=2).status_code < 300
    except httpx.TransportError:
        return False


@contextmanager
def serve(
    project: Path,
    factory: str,
    env: dict[str, str],
    log: Path,
    *,
    module: str = "bench_apps",
    ready: Callable[[str], bool] = noop_answers,
    workers: int = 1,
) -> Iterator[str]:
    """`uvicorn <module>:<factory> --factory` in `project` (`--workers` processes), its
    output appended to `log`; yields its base URL once `ready(base URL)` says it answers
    (within 30 s)."""
    port = free_port()
    with log.open("ab") as out:
        server = subprocess.Popen(
            [
                "uv",
                "run",
                "--no-sync",
                "uvicorn",
                f"{module}:{factory}",
                "--factory",
                *UVICORN_FLAGS,
                "--port",
                str(port),
                *(["--workers", str(workers)] if workers > 1 else []),
            ],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not ready(base):
            assert server.poll() is None, f"uvicorn {factory} exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"uvicorn {factory} did not answer; see {log}"
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def fresh_logs(name: str) -> Path:
    """An empty folder `name` in bench/results/ for the processes' logs and databases,
    kept after the run, to read when a process failed."""
    logs = RESULTS / name
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    return logs


# --- wrk ------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str, *, seconds: float, connections: int, close: bool = False, count_errors: bool = False
) -> dict[str, float]:
    """POST `url` with wrk; requests per second and latency percentiles in ms. An answer
    that is not a 2xx fails the bench, unless `count_errors` (then: `non_2xx`)."""
    executable = shutil.which("wrk") or install("wrk", "wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
    command = [executable, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"]
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
    assert errors is None or count_errors, f"{url}: {errors[0]}"
    result["non_2xx"] = float(errors[1]) if errors else 0.0
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
        copier.run_copy(str(TEMPLATE), dst, data=answers, defaults=True, quiet=True, vcs_ref="HEAD")
    return dst


def prepare(workdir: Path, backend: str, database: str = "sqlite") -> Path:
    """A rendered project with the bench apps in it, its environment synced."""
    project = render(
        workdir / f"{backend}-{database}" / "acme-shop", task_backend=backend, database=database
    )
    for name in ("bench_apps.py", "bench_worker.py", "bench_enqueue.py", "bench_pgqueuer.py"):
        shutil.copy(BENCH / "project" / name, project / name)
    subprocess.run(["uv", "sync", "--quiet"], cwd=project, env=project_env(), check=True)
    return project


# --- databases ------------------------------------------------------------------------------


@dataclass
class Databases:
    """A fresh, migrated database for each server that writes job rows, so that no server
    sees another's rows or waits for another's writes: an SQLite file each in `folder`,
    or with `postgresql` (a server's URL) a database each on that server."""

    folder: Path
    postgresql: str | None = None
    made: list[str] = field(default_factory=list)

    def new(self, project: Path, env: dict[str, str], name: str) -> dict[str, str]:
        """`env` with a new database, migrated by `project` as a deploy does (the schema
        first, then the processes). `name`: the SQLite file's (PostgreSQL's are random)."""
        if self.postgresql is None:
            url = f"sqlite+aiosqlite:///{self.folder / name}.db"
        else:
            url = create_database(self.postgresql, f"bench_{uuid.uuid4().hex}")
        self.made.append(url)
        env = {**env, "ACME_SHOP_DATABASE_URL": url}
        migrate = [str(project / ".venv/bin/acme_shop"), "migrate"]
        subprocess.run(migrate, env=env, check=True, stdout=subprocess.DEVNULL)
        return env

    def drop(self) -> None:
        """Drop the PostgreSQL databases made (SQLite files stay with the logs)."""
        if self.postgresql is None:
            return
        with psycopg.connect(self.postgresql, autocommit=True) as connection:
            for url in self.made:
                name = url.rpartition("/")[2]
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def job_counts(database_url: str) -> dict[str, int]:
    """How many job rows the app's database (its SQLAlchemy URL) holds, by status."""
    query = "SELECT status, count(*) FROM jobs GROUP BY status"
    if database_url.startswith("sqlite"):
        path = database_url.partition(":///")[2]
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            return dict(db.execute(query).fetchall())
    url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    with psycopg.connect(url) as connection:
        return dict(connection.execute(query).fetchall())


def wait_for_jobs(database_url: str, timeout: float = 300) -> None:
    """Return once no job is pending or running in the database: the jobs one load left
    behind would otherwise run during the next contender's load."""
    deadline = time.monotonic() + timeout
    while (counts := job_counts(database_url)).get("pending", 0) + counts.get("running", 0):
        assert time.monotonic() < deadline, f"jobs still owed after {timeout} s: {counts}"
        time.sleep(0.2)


# --- the measures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    """A served bench app."""

    base: str
    """Its URL."""
    database_url: str | None
    """Its own database, when it writes job rows."""
    runs_jobs: bool
    """Whether it runs its jobs itself (background backend), so that the rows end."""

    def load(
        self,
        path: str,
        *,
        seconds: float,
        connections: int,
        close: bool = False,
        count_errors: bool = False,
    ) -> dict[str, float]:
        """wrk on POST `path`; then, if it runs its jobs, wait until they have run."""
        url = f"{self.base}{path}"
        result = wrk(
            url, seconds=seconds, connections=connections, close=close, count_errors=count_errors
        )
        if self.runs_jobs and self.database_url:
            wait_for_jobs(self.database_url)
        return result


def serve_apps(
    stack: ExitStack,
    servers: dict[str, tuple[Path, str]],
    env: dict[str, str],
    databases: Databases,
    logs: Path,
    *,
    phase: str,
) -> dict[str, App]:
    """Start each named server, (project, factory), in `stack`: the generated ones each on
    a database of its own. `phase` names the measure, in the log and database names."""
    apps = {}
    for name, (project, factory) in servers.items():
        label = f"{phase}-{project.parent.name}-{factory}"
        writes = factory.startswith(("generated", "naive", "driver"))
        app_env = databases.new(project, env, label) if writes else env
        base = stack.enter_context(serve(project, factory, app_env, logs / f"{label}.log"))
        database_url = app_env.get("ACME_SHOP_DATABASE_URL") if app_env is not env else None
        apps[name] = App(base, database_url, runs_jobs=not is_arq(project))
    return apps


def is_arq(project: Path) -> bool:
    return (project / "src" / "acme_shop" / "worker.py").exists()


def check_jobs(apps: dict[str, App]) -> dict[str, dict[str, int]]:
    """Each app's job rows by status; every row of an app that runs its jobs succeeded (a
    task missing from `tasks.TASKS` would fail them all)."""
    counts = {name: job_counts(app.database_url) for name, app in apps.items() if app.database_url}
    for name, app in apps.items():
        if app.runs_jobs and app.database_url:
            assert set(counts[name]) <= {"succeeded"}, f"{name}: jobs {counts[name]}"
    return counts


# The rows of the outbox's cost: the generated endpoint with its job row, and without; on
# POST /noop (the job row is the request's only write) and POST /event (one more INSERT in
# a transaction that the route opens anyway, to store an event).
WITH_ROW, WITHOUT_ROW = "generated, {backend} backend", "generated, {backend}, no outbox row"
NAIVE = "naive: AsyncSession INSERT + commit + BackgroundTasks"
NAIVE_ENGINE = "naive route on the generated engine"
DURABLE_FLOOR = "floor: naive route on the generated engine, its row a job, claimed and recorded"
"""The generated route's durable work alone, no app around it: what no durable route on this
stack can beat, however thin its app (issue 20)."""
SQLITE3, ASYNCPG = "drivers' limit: sqlite3 INSERT on the loop", "drivers' limit: asyncpg INSERT"
"""What a user writes without the outbox (issue 20's reference): the generated rows must
reach it."""
EVENT = ", POST /event"
SYNCHRONOUS_NORMAL = "generated, background backend, DATABASE_SYNCHRONOUS=NORMAL"
"""SQLite's `synchronous` setting (issue 20): FULL, the default, against NORMAL."""


def outbox_servers(projects: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    servers = {}
    for backend, project in projects.items():
        servers[WITH_ROW.format(backend=backend)] = (project, "generated")
        servers[WITHOUT_ROW.format(backend=backend)] = (project, "generated_no_outbox")
    return servers


def measure_endpoints(
    projects: dict[str, Path],
    env: dict[str, str],
    databases: Databases,
    logs: Path,
    args: argparse.Namespace,
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Requests per second of POST /noop in eight apps, each in its own uvicorn, side by
    side; the generated app with and without its job row on each backend, also on POST
    /event. Also each app's job rows by status."""
    background, arq = projects["background"], projects["arq"]
    outbox = outbox_servers(projects)
    servers = {
        "bare FastAPI": (background, "bare"),
        NAIVE: (background, "naive"),
        NAIVE_ENGINE: (background, "naive_on_generated_engine"),
        DURABLE_FLOOR: (background, "naive_with_durable_job"),
        SQLITE3: (background, "driver_sqlite3"),
        **{name: outbox[name] for name in list(outbox)[:2]},
        SYNCHRONOUS_NORMAL: (background, "generated_synchronous_normal"),
        "raw arq enqueue_job": (arq, "raw_arq"),
        "generated QueueRedis.enqueue_job": (arq, "fast_enqueue"),
        **{name: outbox[name] for name in list(outbox)[2:]},
    }
    with ExitStack() as stack:
        apps = serve_apps(stack, servers, env, databases, logs, phase="endpoints")
        outbox_apps = {name: apps[name] for name in outbox}
        contenders = {**loads(apps, "/noop", args), **loads(outbox_apps, "/event", args, EVENT)}
        return alternate(args.rounds, contenders), check_jobs(apps)


def loads(
    apps: dict[str, App], path: str, args: argparse.Namespace, suffix: str = ""
) -> dict[str, Callable[[], dict[str, float]]]:
    """For each named app, a wrk run that POSTs its `path`, named the app's name + `suffix`."""
    return {
        name + suffix: lambda app=app: app.load(path, seconds=args.seconds, connections=CONNECTIONS)
        for name, app in apps.items()
    }


def measure_outbox_postgresql(
    projects: dict[str, Path], env: dict[str, str], logs: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """The generated endpoint with and without its job row, on PostgreSQL (`TEST_DATABASE_URL`
    when it answers, else a throwaway server), and the server's fsync setting. Also each
    app's job rows by status."""
    with running_postgres() as server_url, ExitStack() as stack:
        databases = Databases(logs, postgresql=server_url)
        stack.callback(databases.drop)
        outbox = outbox_servers(projects)
        servers = {
            NAIVE: (projects["background"], "naive"),
            NAIVE_ENGINE: (projects["background"], "naive_on_generated_engine"),
            DURABLE_FLOOR: (projects["background"], "naive_with_durable_job"),
            ASYNCPG: (projects["background"], "driver_asyncpg"),
            **outbox,
        }
        apps = serve_apps(stack, servers, env, databases, logs, phase="outbox")
        outbox_apps = {name: apps[name] for name in outbox}
        contenders = {**loads(apps, "/noop", args), **loads(outbox_apps, "/event", args, EVENT)}
        measured = alternate(args.rounds, contenders)
        with psycopg.connect(server_url) as connection:
            fsync = connection.execute("SHOW fsync").fetchone()
        return {"fsync": fsync[0] if fsync else "?", "endpoints": measured}, check_jobs(apps)


def measure_slow_tasks(
    project: Path, env: dict[str, str], databases: Databases, logs: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Latency while every request schedules a 2-second task (background backend). Also each
    app's job rows by status."""
    seconds = max(args.seconds, 6)
    servers = {
        "bare": (project, "bare"),
        "generated": (project, "generated"),
        "gc off": (project, "generated_gc_off"),
    }
    with ExitStack() as stack:
        apps = serve_apps(stack, servers, env, databases, logs, phase="slow")
        contenders = {}
        for close in (False, True):
            mode = "new connection per request" if close else "keep-alive"
            for name, app in (
                ("bare FastAPI", apps["bare"]),
                ("generated, background", apps["generated"]),
            ):
                contenders[f"{name} ({mode})"] = lambda app=app, close=close: app.load(
                    "/sleep", seconds=seconds, connections=16, close=close
                )
        generated, gc_off = apps["generated"], apps["gc off"]
        # The same generated endpoint with a no-op task: what the 2 s tasks add.
        contenders["generated, background, no-op task (keep-alive)"] = lambda: generated.load(
            "/noop", seconds=seconds, connections=16
        )
        # A diagnostic: each pending task keeps its request alive, and the collector scans them.
        contenders["generated, background, garbage collector off (keep-alive)"] = lambda: (
            gc_off.load("/sleep", seconds=seconds, connections=16)
        )
        return alternate(args.rounds, contenders), check_jobs(apps)


PROCESS_CONNECTIONS = 64


def measure_processes(
    projects: dict[str, Path], env: dict[str, str], logs: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The generated background app's POST /noop in one uvicorn process and in two
    (`--workers 2`, as a user runs it on two cores), 64 connections, on each database
    (`projects`: database -> project): how many answers were not a 2xx, and what the
    second process gives; the naive route likewise, for what the machine allows (wrk
    and PostgreSQL share its two cores with the app)."""
    results = {}
    for database, project in projects.items():
        with ExitStack() as stack:
            if database == "postgresql":
                databases = Databases(logs, postgresql=stack.enter_context(running_postgres()))
                stack.callback(databases.drop)
            else:
                databases = Databases(logs)
            contenders: dict[str, Callable[[], dict[str, float]]] = {}
            for factory, workers in itertools.product(("generated", "naive"), (1, 2)):
                label = f"processes-{database}-{factory}-{workers}"
                app_env = databases.new(project, env, label)
                base = stack.enter_context(
                    serve(project, factory, app_env, logs / f"{label}.log", workers=workers)
                )
                app = App(base, app_env["ACME_SHOP_DATABASE_URL"], runs_jobs=True)
                contenders[f"{factory} {workers}"] = lambda app=app: app.load(
                    "/noop",
                    seconds=args.seconds,
                    connections=PROCESS_CONNECTIONS,
                    count_errors=True,
                )
            results[database] = alternate(args.rounds, contenders)
    return results


def processes_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        f"Processes: the generated background app, POST /noop, wrk -t1 -c{PROCESS_CONNECTIONS}",
        "",
        "| app | database | 1 process req/s | 2 processes req/s | 2 / 1 | p99 ms 1 / 2 "
        "| non-2xx 1 / 2 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for database, measured in results.items():
        for factory in ("generated", "naive"):
            one, two = measured[f"{factory} 1"], measured[f"{factory} 2"]
            errors = [sum(run["non_2xx"] for run in m["runs"]) for m in (one, two)]
            lines.append(
                f"| {factory} | {database} | {one['rps']:.0f} | {two['rps']:.0f} "
                f"| {two['rps'] / one['rps']:.2f}x | {one['p99_ms']:.0f} / {two['p99_ms']:.0f} "
                f"| {errors[0]:.0f} / {errors[1]:.0f} |"
            )
    return [*lines, ""]


PGQUEUER = "pgqueuer==1.6.0"
"""PostgreSQL's own queue, beside arq (issue 20): run by `uv run --with`, not a dependency."""


WORKER_FLOOR = "floor: raw arq Worker, each job's claim and record (Runner.write)"
"""What any durable worker costs on arq and this engine, however thin (issue 20)."""


def measure_worker(
    projects: dict[str, Path],
    env: dict[str, str],
    databases: Databases,
    logs: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """N no-op jobs drained by the generated worker on each database (`projects`: database
    -> arq project), by a raw arq Worker, and, on the same PostgreSQL, by pgqueuer's own
    QueueManager (at most 10 jobs at once, as arq's max_jobs)."""
    # All the rows are written before the drain starts, so they become overdue sooner than
    # a request's would: the relay (it runs in the worker) would send them again meanwhile.
    env = {**env, "ACME_SHOP_RELAY_GRACE_SECONDS": "3600"}

    def drain(project: Path, kind: str, run_env: dict[str, str], label: str) -> dict[str, float]:
        result_file = logs / f"worker-{label}.json"
        if kind == "pgqueuer":
            url = run_env["ACME_SHOP_DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
            command = ["uv", "run", "--no-sync", "--with", PGQUEUER, "python"]
            command += ["bench_pgqueuer.py", url, str(args.jobs), str(result_file)]
        else:
            command = ["uv", "run", "--no-sync", "python", "bench_worker.py", kind]
            command += [str(args.jobs), str(result_file)]
        with (logs / f"worker-{label}.log").open("ab") as out:
            subprocess.run(
                command,
                cwd=project,
                env=run_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=300,
            )
        seconds = json.loads(result_file.read_text())["seconds"]
        return {"jobs_per_s": args.jobs / seconds, "seconds": seconds}

    with ExitStack() as stack:
        contenders: dict[str, Callable[[], dict[str, float]]] = {}
        sqlite_env = databases.new(projects["sqlite"], env, "worker")
        contenders["raw arq Worker"] = lambda: drain(projects["sqlite"], "raw", sqlite_env, "raw")
        contenders["generated worker, SQLite"] = lambda: drain(
            projects["sqlite"], "generated", sqlite_env, "generated-sqlite"
        )
        contenders[WORKER_FLOOR + ", SQLite"] = lambda: drain(
            projects["sqlite"], "floor", sqlite_env, "floor-sqlite"
        )
        if "postgresql" in projects:
            postgresql = Databases(logs, postgresql=stack.enter_context(running_postgres()))
            stack.callback(postgresql.drop)
            pg_env = postgresql.new(projects["postgresql"], env, "worker")
            contenders["generated worker, PostgreSQL"] = lambda: drain(
                projects["postgresql"], "generated", pg_env, "generated-postgresql"
            )
            contenders[WORKER_FLOOR + ", PostgreSQL"] = lambda: drain(
                projects["postgresql"], "floor", pg_env, "floor-postgresql"
            )
            pgqueuer_env = postgresql.new(projects["postgresql"], env, "pgqueuer")
            contenders["pgqueuer QueueManager, PostgreSQL"] = lambda: drain(
                projects["postgresql"], "pgqueuer", pgqueuer_env, "pgqueuer"
            )
        return alternate(args.rounds, contenders)


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
                "--vcs-ref",
                "HEAD",
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
    header = [f"| {columns[0]} | jobs/s | {columns[1]} |", "| --- | ---: | ---: |"]
    return [title, "", *header, *rows, ""]


def drivers_limit_lines(databases: dict[str, dict[str, Any]]) -> list[str]:
    """The naive route and the drivers' limit on each database, in req/s."""
    lines = []
    for database, measured in databases.items():
        naive = measured.get(NAIVE)
        for name in (NAIVE_ENGINE, DURABLE_FLOOR, SQLITE3, ASYNCPG):
            if naive and name in measured:
                rps = measured[name]["rps"]
                lines.append(
                    f"{database}: naive route {naive['rps']:.0f} req/s; {name} {rps:.0f} req/s "
                    f"({rps / naive['rps']:.2f}x the naive route)."
                )
    return [*lines, ""] if lines else []


def outbox_table(results: dict[str, Any]) -> list[str]:
    """What the job row costs per request: the same generated endpoint with it and without."""
    databases = {"SQLite": results["endpoints"]}
    if "outbox_postgresql" in results:
        postgresql = results["outbox_postgresql"]
        databases[f"PostgreSQL (fsync {postgresql['fsync']})"] = postgresql["endpoints"]
    lines = [
        "Outbox: the generated endpoint with its job row (as shipped) and without "
        f"(generated_no_outbox), wrk -t1 -c{CONNECTIONS}",
        "",
        "| route | backend | database | with row req/s | without req/s | with / without "
        "| p50 ms with / without | per request | with row / naive | p99 ms with row / naive |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for route, suffix in (("POST /noop", ""), ("POST /event", EVENT)):
        for database, measured in databases.items():
            naive = measured.get(NAIVE) if not suffix else None
            for backend in BACKENDS:
                with_row = measured[WITH_ROW.format(backend=backend) + suffix]
                without = measured[WITHOUT_ROW.format(backend=backend) + suffix]
                extra_ms = (1 / with_row["rps"] - 1 / without["rps"]) * 1e3
                vs_naive = f"{with_row['rps'] / naive['rps']:.2f}x" if naive else ""
                p99 = f"{with_row['p99_ms']:.0f} / {naive['p99_ms']:.0f}" if naive else ""
                lines.append(
                    f"| {route} | {backend} | {database} | {with_row['rps']:.0f} "
                    f"| {without['rps']:.0f} | {with_row['rps'] / without['rps']:.2f}x "
                    f"| {with_row['p50_ms']:.2f} / {without['p50_ms']:.2f} "
                    f"| {extra_ms:+.2f} ms | {vs_naive} | {p99} |"
                )
    lines += [
        "",
        *drivers_limit_lines(databases),
        "(With row / naive: against the route a user writes without the outbox, an AsyncSession",
        "INSERT + commit + BackgroundTasks, on the same database; the target is 1.0x or more.",
        "/noop: the job row is the request's only write; /event: it is one more INSERT in a",
        "transaction that stores an event anyway. Per request: 1/(req/s) with the row minus",
        "without, the serving time the row adds; under background it includes running the",
        "job from its row after the response: its claim and its record.)",
        "",
    ]
    return lines


def hashing_table_lines(result: dict[str, Any]) -> list[str]:
    from bench.hashing import table_lines  # bench.hashing imports this module

    return table_lines(result)


def table(results: dict[str, Any]) -> str:
    lines = []
    endpoints = results["endpoints"]
    bare = endpoints["bare FastAPI"]["rps"]
    raw = endpoints["raw arq enqueue_job"]["rps"]
    lines.append(f"Endpoints: wrk -t1 -c{CONNECTIONS}, POST, median of {results['rounds']} rounds")
    lines.append("")
    naive = endpoints[NAIVE]["rps"] if NAIVE in endpoints else None
    lines.append("| endpoint | req/s | p50 ms | p99 ms | vs bare | vs naive | vs raw arq |")
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, m in endpoints.items():
        if name.endswith(EVENT):  # in the outbox table
            continue
        vs_raw = f"{m['rps'] / raw:.2f}x" if "arq" in name or "Queue" in name else ""
        compared = name.startswith(("generated,", "floor:")) or name == NAIVE_ENGINE
        vs_naive = f"{m['rps'] / naive:.2f}x" if naive and compared else ""
        lines.append(
            f"| {name} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} "
            f"| {m['rps'] / bare:.2f}x | {vs_naive} | {vs_raw} |"
        )
    lines.append("")
    lines += outbox_table(results)
    if "processes" in results:
        lines += processes_lines(results["processes"])
    lines.append("Every request schedules a 2-second task: wrk -t1 -c16")
    lines.append("")
    lines.append("| endpoint | req/s | p50 ms | p99 ms |")
    lines.append("| --- | ---: | ---: | ---: |")
    for name, m in results["slow_tasks"].items():
        lines.append(f"| {name} | {m['rps']:.1f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    lines.append("")
    if "hashing" in results:
        lines += [*hashing_table_lines(results["hashing"]), ""]
    if "flows" in results:
        from bench.flows import table_lines as flows_table_lines  # it imports this module

        lines += [*flows_table_lines(results["flows"]), ""]
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
    parser.add_argument(
        "--no-postgresql", action="store_true", help="skip the outbox rows on PostgreSQL"
    )
    parser.add_argument(
        "--table", type=Path, metavar="JSON", help="print the table of a run written before"
    )
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    from bench.hashing import measure_hashing  # bench.hashing imports this module

    if args.quick:
        args.rounds, args.seconds, args.jobs, args.copies = 1, 2, 300, 2

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        logs = fresh_logs("logs")
        if not shutil.which("redis-server"):
            install("redis-server", "redis-server")
        with own_redis() as redis_url:
            print("rendering and syncing the projects...", flush=True)
            projects = {backend: prepare(workdir, backend) for backend in BACKENDS}
            env = project_env(
                ACME_SHOP_LOG_FORMAT="json",
                ACME_SHOP_REDIS_URL=redis_url,
                ACME_SHOP_QUEUE_NAME="arq:bench",
            )
            databases = Databases(logs)  # SQLite files, kept with the logs
            results: dict[str, Any] = {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "rounds": args.rounds,
                "seconds": args.seconds,
                "jobs": args.jobs,
                "job rows": {},
            }
            print("endpoints...", flush=True)
            results["endpoints"], results["job rows"]["endpoints"] = measure_endpoints(
                projects, env, databases, logs, args
            )
            if not args.no_postgresql:
                print("outbox on PostgreSQL...", flush=True)
                pg_projects = {
                    backend: prepare(workdir, backend, "postgresql") for backend in BACKENDS
                }
                results["outbox_postgresql"], results["job rows"]["postgresql"] = (
                    measure_outbox_postgresql(pg_projects, env, logs, args)
                )
            print("one process and two...", flush=True)
            by_database = {"sqlite": projects["background"]}
            if not args.no_postgresql:
                by_database["postgresql"] = pg_projects["background"]
            results["processes"] = measure_processes(by_database, env, logs, args)
            print("2-second tasks...", flush=True)
            results["slow_tasks"], results["job rows"]["slow_tasks"] = measure_slow_tasks(
                projects["background"], env, databases, logs, args
            )
            print("password hashing...", flush=True)
            results["hashing"] = measure_hashing(
                projects["background"],
                {**env, "ACME_SHOP_DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/hashing.db"},
                logs / "hashing.log",
                min(args.seconds, 3),
            )
            print("example flows...", flush=True)
            from bench.flows import measure as measure_flows  # bench.flows imports this module

            results["flows"] = measure_flows(
                projects, workdir, logs, min(args.seconds, 3), redis_url
            )
            print("enqueue...", flush=True)
            results["enqueue"] = measure_enqueue(projects["arq"], env, logs, args)
            print("worker...", flush=True)
            arq_projects = {"sqlite": projects["arq"]}
            if not args.no_postgresql:
                arq_projects["postgresql"] = pg_projects["arq"]
            results["worker"] = measure_worker(arq_projects, env, databases, logs, args)
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
