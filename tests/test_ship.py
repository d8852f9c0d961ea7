"""Docker, compose, CI and pre-commit: linted for every combination that renders them, and
the commands that the image and compose run started as plain processes that answer."""

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from .conftest import VARIANTS, render, run
from .postgres_server import create_database
from .redis_server import free_port
from .support import wait_until_healthy

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DOCKER_FILES = ("Dockerfile", ".dockerignore", "compose.yaml")
CI_FILES = (".github/workflows/ci.yml", ".pre-commit-config.yaml")
COMBINATIONS = list(
    itertools.product(
        (True, False), (True, False), ("background", "arq"), (True, False), ("sqlite", "postgresql")
    )
)
ZIZMOR_CONFIG = Path(__file__).parent / "zizmor.yml"
PINNED_ACTION = re.compile(r"^\s*(- )?uses: [\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def combination_id(
    docker: bool, github_actions: bool, backend: str, examples: bool, database: str
) -> str:
    return "-".join(
        (
            "docker" if docker else "nodocker",
            "gha" if github_actions else "nogha",
            backend,
            "examples" if examples else "minimal",
            database,
        )
    )


@pytest.mark.parametrize(
    ("docker", "github_actions", "task_backend", "include_examples", "database"),
    COMBINATIONS,
    ids=[combination_id(*combination) for combination in COMBINATIONS],
)
def test_ship_files_render_and_pass_their_linters(
    tmp_path: Path,
    docker: bool,
    github_actions: bool,
    task_backend: str,
    include_examples: bool,
    database: str,
) -> None:
    # opentelemetry on in half of them, covering each backend, database and examples answer.
    opentelemetry = include_examples != (database == "postgresql")
    project = render(
        tmp_path / "acme-shop",
        docker=docker,
        github_actions=github_actions,
        task_backend=task_backend,
        include_examples=include_examples,
        database=database,
        opentelemetry=opentelemetry,
    )

    for name in DOCKER_FILES:
        assert (project / name).is_file() is docker, name
    for name in CI_FILES:
        assert (project / name).is_file() is github_actions, name
    assert (project / ".github").exists() is github_actions
    if docker:
        run(project, "hadolint", "Dockerfile")
        run(project, "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "compose.yaml")
        check_dockerfile(project)
        check_compose(project, task_backend, include_examples, database, opentelemetry)
    if github_actions:
        workflow = ".github/workflows/ci.yml"
        run(project, "check-jsonschema", "--builtin-schema", "vendor.github-workflows", workflow)
        run(
            project,
            "zizmor",
            "--offline",
            "--persona",
            "pedantic",
            "--config",
            str(ZIZMOR_CONFIG),
            workflow,
        )
        check_workflow(project, task_backend, database)
        run(project, "pre-commit", "validate-config", ".pre-commit-config.yaml")
        check_pre_commit(project)


def check_dockerfile(project: Path) -> None:
    build, runtime = stages(project / "Dockerfile")
    build_runs = [arguments for instruction, arguments in build if instruction == "RUN"]
    assert any("uv sync --locked --no-dev" in command for command in build_runs)
    assert build[0][1].endswith(" AS build")
    # The runtime stage: the venv copied from the build stage, no uv, a numeric non-root user.
    copies = [arguments for instruction, arguments in runtime if instruction == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"]
    assert not any("uv" in arguments.split() for _, arguments in runtime)
    [user] = [arguments for instruction, arguments in runtime if instruction == "USER"]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    assert any(instruction == "HEALTHCHECK" for instruction, _ in runtime)
    assert exec_form(runtime, "CMD")[:3] == ["uvicorn", "acme_shop.main:create_app", "--factory"]
    # Only what the Dockerfile copies is in the build context: never .env.
    ignored = (project / ".dockerignore").read_text().split("\n")
    assert "*" in ignored
    assert not [line for line in ignored if line.startswith("!") and ".env" in line]


def check_compose(
    project: Path, task_backend: str, include_examples: bool, database: str, opentelemetry: bool
) -> None:
    compose = yaml.safe_load((project / "compose.yaml").read_text())
    services = compose["services"]
    expected = {"migrate", "api"} | ({"worker", "redis"} if task_backend == "arq" else set())
    expected |= {"postgres"} if database == "postgresql" else set()
    expected |= {"jaeger"} if opentelemetry else set()
    assert set(services) == expected | ({"mailpit"} if include_examples else set())
    api = services["api"]
    assert api["build"] == "."
    assert api["env_file"] == [{"path": ".env", "required": False}]
    settings = (project / "src/acme_shop/settings.py").read_text()
    for name in api.get("environment", {}):
        # OpenTelemetry's own variables keep their names (settings.py aliases them).
        field = name.removeprefix("ACME_SHOP_").lower()
        assert name.startswith(("ACME_SHOP_", "OTEL_")), name
        assert f"    {field}: " in settings, f"{name} is not a setting"
    if opentelemetry:
        assert api["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
        assert "16686:16686" in services["jaeger"]["ports"]
    # The app's processes: one image, one environment; the long-running ones start only
    # after the one-shot `migrate` (the project's console script) has succeeded.
    apps = {name: services[name] for name in ("migrate", "api", "worker") if name in services}
    for name, service in apps.items():
        assert service["build"] == ".", name
        assert service.get("environment") == api.get("environment"), name
        assert service.get("volumes") == api.get("volumes"), name
    migrate = services["migrate"]
    assert migrate["command"] == ["acme_shop", "migrate"]
    scripts = tomllib.loads((project / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["acme_shop"] == "acme_shop.cli:main"
    assert migrate["restart"] == "no"
    assert migrate["healthcheck"] == {"disable": True}  # not the image's HTTP check
    assert "ports" not in migrate
    started_after_migrate = [service for name, service in apps.items() if name != "migrate"]
    for service in started_after_migrate:
        dependencies = service["depends_on"]
        assert dependencies["migrate"] == {"condition": "service_completed_successfully"}
        if include_examples:
            assert dependencies["mailpit"] == {"condition": "service_started"}
    if database == "postgresql":
        postgres = services["postgres"]
        assert re.fullmatch(r"postgres:\d+(\.\d+)*-alpine", postgres["image"]), postgres["image"]
        assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data"]
        assert "postgres-data" in compose["volumes"]
        assert "ports" not in postgres
        assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
        healthy = {"condition": "service_healthy"}
        assert migrate["depends_on"] == {"postgres": healthy}
        for service in started_after_migrate:
            assert service["depends_on"]["postgres"] == healthy
        # The app's URL names the server, user, password and database that compose creates.
        environment = postgres["environment"]
        user, password, name = (
            environment[f"POSTGRES_{key}"] for key in ("USER", "PASSWORD", "DB")
        )
        assert api["environment"]["ACME_SHOP_DATABASE_URL"] == (
            f"postgresql+asyncpg://{user}:{password}@postgres:5432/{name}"
        )
        assert name == "acme_shop"
        assert "asyncpg" in (project / "pyproject.toml").read_text()
    else:
        # The default URL (sqlite+aiosqlite:///var/app.db, from WORKDIR /app) is on the
        # volume that every process of the app shares.
        assert "ACME_SHOP_DATABASE_URL" not in api.get("environment", {})
        assert '"sqlite+aiosqlite:///var/app.db"' in settings
        for name, service in apps.items():
            assert service["volumes"] == ["data:/app/var"], name
        assert "depends_on" not in migrate
    volumes = {"data"} if include_examples or database == "sqlite" else set()
    volumes |= {"postgres-data"} if database == "postgresql" else set()
    volumes |= {"redis-data"} if task_backend == "arq" else set()
    assert set(compose["volumes"]) == volumes
    if task_backend == "arq":
        worker, redis = services["worker"], services["redis"]
        assert worker["command"] == [
            "arq", "acme_shop.worker.WorkerSettings",
            "--custom-log-dict", "acme_shop.worker.LOG_CONFIG",
        ]  # fmt: skip
        assert worker["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert api["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
        # Queued jobs survive a restart: append-only persistence on a named volume.
        assert redis["command"] == ["redis-server", "--appendonly", "yes"]
        assert redis["volumes"] == ["redis-data:/data"]
        assert worker["environment"]["ACME_SHOP_REDIS_URL"] == "redis://redis:6379/0"
    if include_examples:
        assert api["environment"]["ACME_SHOP_SMTP_HOST"] == "mailpit"


def check_workflow(project: Path, task_backend: str, database: str) -> None:
    text = (project / ".github/workflows/ci.yml").read_text()
    workflow = yaml.safe_load(text)
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"push", "pull_request"}
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["concurrency"]["group"] == "${{ github.workflow }}-${{ github.ref }}"
    uses = [line for line in text.splitlines() if "uses:" in line]
    assert uses
    for line in uses:
        assert PINNED_ACTION.match(line), f"not pinned to a commit with its version: {line}"
    commands: list[str] = []
    for job in workflow["jobs"].values():
        checkout = job["steps"][0]
        assert checkout["uses"].startswith("actions/checkout@")
        assert checkout["with"]["persist-credentials"] is False
        commands += [step["run"] for step in job["steps"] if "run" in step]
    for gate in ("ruff check", "ruff format --check .", "mypy", "pytest"):
        assert any(gate in command for command in commands), gate
    test_job = workflow["jobs"]["test"]
    assert test_job["strategy"]["matrix"]["python-version"] == ["3.11", "3.12", "3.13"]
    assert test_job["name"] == "pytest (Python ${{ matrix.python-version }})"
    services, env = test_job.get("services", {}), test_job.get("env", {})
    expected = {"redis"} if task_backend == "arq" else set()
    assert set(services) == expected | ({"postgres"} if database == "postgresql" else set())
    assert set(env) == {
        name
        for name, wanted in (
            ("REDIS_URL", task_backend == "arq"),
            ("TEST_DATABASE_URL", database == "postgresql"),
        )
        if wanted
    }
    if task_backend == "arq":
        assert services["redis"]["image"].startswith("redis:")
        assert env["REDIS_URL"] == "redis://localhost:6379/0"
    if database == "postgresql":
        postgres = services["postgres"]
        assert re.fullmatch(r"postgres:\d+(\.\d+)*-alpine", postgres["image"]), postgres["image"]
        assert postgres["env"] == {"POSTGRES_HOST_AUTH_METHOD": "trust"}
        assert postgres["ports"] == ["5432:5432"]
        assert '--health-cmd "pg_isready' in postgres["options"]
        assert env["TEST_DATABASE_URL"] == "postgresql://postgres@localhost:5432/postgres"
        # The generated tests read it: the server they create their databases on.
        assert "TEST_DATABASE_URL" in (project / "tests/stubs/database.py").read_text()


def check_pre_commit(project: Path) -> None:
    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff-check", "ruff-format", "mypy", "trailing-whitespace"} <= hooks
    for repo in config["repos"]:
        if repo["repo"] != "local":
            assert re.fullmatch(r"v\d+\.\d+\.\d+", repo["rev"]), repo
    # The hygiene hooks (pre-commit-hooks, the same release as the rev) find nothing to fix.
    files = [str(path.relative_to(project)) for path in project.rglob("*") if path.is_file()]
    for hook in ("trailing-whitespace-fixer", "end-of-file-fixer"):
        run(project, hook, *files)
    run(project, "check-yaml", *[name for name in files if name.endswith((".yml", ".yaml"))])
    run(project, "check-toml", "pyproject.toml")
    run(project, "detect-private-key", *files)


# --- the Dockerfile and compose commands, run as plain processes --------------------------------


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, continuation lines joined, grouped by FROM."""
    text = re.sub(r"\\\n\s*", "", dockerfile.read_text())
    result: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, arguments = line.split(None, 1)
        if instruction == "FROM":
            result.append([])
        result[-1].append((instruction, arguments))
    return result


def exec_form(stage: list[tuple[str, str]], name: str) -> list[str]:
    [arguments] = [arguments for instruction, arguments in stage if instruction == name]
    command: list[str] = json.loads(arguments[arguments.index("[") :])
    return command


def apply_env(env: dict[str, str], arguments: str, root: Path) -> None:
    for pair in shlex.split(arguments.replace("$PATH", env["PATH"])):
        key, value = pair.split("=", 1)
        env[key] = value.replace("/app", str(root / "app"))


def build_image(project: Path, root: Path, env: dict[str, str]) -> list[tuple[str, str]]:
    """Run the build stage's COPY and RUN steps with `root` as `/`; return the runtime stage.

    The uv of this machine stands in for the image's, the Python uv finds for the image's."""
    build, runtime = stages(project / "Dockerfile")
    workdir = root / "src"
    for instruction, arguments in build[1:]:
        if instruction == "ENV":
            apply_env(env, arguments, root)
        elif instruction == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY" and not arguments.startswith("--from="):
            *sources, target = arguments.split()
            target_path = workdir / target
            for pattern in sources:
                for path in project.glob(pattern):
                    if path.is_dir():  # as docker does: the folder's contents into the target
                        shutil.copytree(path, target_path, dirs_exist_ok=True)
                    else:
                        target_path.mkdir(parents=True, exist_ok=True)
                        shutil.copy(path, target_path / path.name)
        elif instruction == "RUN":
            command = re.sub(r"--mount=\S+\s+", "", arguments)
            run(workdir, "bash", "-c", command, env=env)
    return runtime


def test_the_image_refuses_to_build_without_uv_lock(tmp_path: Path) -> None:
    project = render(tmp_path / "acme-shop")
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}

    with pytest.raises(AssertionError, match="run `uv lock`"):
        build_image(project, tmp_path / "root", env)


@pytest.mark.parametrize(
    "variant",
    [
        "background-examples-sqlite-py3.11",
        "arq-examples-sqlite-py3.11",
        "arq-examples-postgresql-otel-py3.11",
    ],
    indirect=True,
)
def test_the_image_and_compose_commands_serve(
    synced_project: Path, variant: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The build stage's `uv sync` runs, then compose's `migrate`, the runtime stage's CMD
    and HEALTHCHECK and the compose worker's command and healthcheck run from a folder
    holding only the venv and var/."""
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["UV_PYTHON"] = "3.11"  # the image's Python
    runtime = build_image(synced_project, tmp_path, env)
    shutil.rmtree(tmp_path / "src")  # the build stage's source is not in the runtime stage
    app = tmp_path / "app"
    for instruction, arguments in runtime:
        if instruction == "ENV":
            apply_env(env, arguments, tmp_path)
    del env["UV_PYTHON"]
    (app / "var").mkdir()
    assert sorted(path.name for path in app.iterdir()) == [".venv", "var"]

    port = free_port()
    compose = yaml.safe_load((synced_project / "compose.yaml").read_text())["services"]
    env |= compose["api"]["environment"]
    arq = VARIANTS[variant]["task_backend"] == "arq"
    postgresql = VARIANTS[variant]["database"] == "postgresql"
    if arq:
        env["ACME_SHOP_REDIS_URL"] = request.getfixturevalue("redis_url")
        env["ACME_SHOP_QUEUE_NAME"] = f"image:{port}"
    if postgresql:  # compose's server is the `postgres` service; here, the tests' server
        server = request.getfixturevalue("postgres_url")
        env["ACME_SHOP_DATABASE_URL"] = create_database(server, f"image_{uuid.uuid4().hex}")

    def on_this_machine(command: list[str]) -> list[str]:
        """The image's command, on a free loopback port instead of 0.0.0.0:8000."""
        replaced = {"8000": str(port), "0.0.0.0": "127.0.0.1"}
        return [replaced.get(part, part).replace(":8000/", f":{port}/") for part in command]

    api_command = on_this_machine(exec_form(runtime, "CMD"))
    # Nothing creates tables at start-up: before compose's one-shot `migrate`, the API
    # refuses to start and names the command.
    refused = subprocess.run(
        api_command, cwd=app, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode != 0
    assert "acme_shop migrate` first" in refused.stdout + refused.stderr
    run(app, *compose["migrate"]["command"], env=env)

    processes = [start(api_command, app, env)]
    if arq:
        processes.append(start(compose["worker"]["command"], app, env))
    try:
        # Under arq, 200 also means the worker's heartbeat is in Redis.
        wait_until_healthy(f"http://127.0.0.1:{port}", processes[0])
        assert httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).status_code == 200
        healthcheck_command = exec_form(runtime, "HEALTHCHECK")
        assert "/health/live'" in healthcheck_command[-1]  # liveness: no dependency checked
        run(app, *on_this_machine(healthcheck_command), env=env)
        if arq:
            healthcheck = compose["worker"]["healthcheck"]["test"]
            assert healthcheck[0] == "CMD"
            run(app, *healthcheck[1:], env=env)
        assert (app / "var/app.db").is_file() is not postgresql
    finally:
        for process in processes:
            process.terminate()
        outputs = [process.communicate(timeout=30)[0] for process in processes]
    assert "Application startup complete" in outputs[0]


def start(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_images_and_ci_follow_the_lowest_python(tmp_path: Path) -> None:
    project = render(tmp_path / "acme-shop", python_version="3.12")

    workflow = yaml.safe_load((project / ".github/workflows/ci.yml").read_text())
    assert workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"] == ["3.12", "3.13"]
    for job in ("lint", "types"):
        assert workflow["jobs"][job]["steps"][1]["with"]["python-version"] == "3.12"
    images = [arguments for stage in stages(project / "Dockerfile") for _, arguments in stage[:1]]
    assert images == ["python:3.12-slim-trixie AS build", "python:3.12-slim-trixie"]
