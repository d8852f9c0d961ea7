"""A PostgreSQL for the template's tests: `TEST_DATABASE_URL` when it answers, else a
throwaway server started with initdb and pg_ctl (as the `postgres` user under root)."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from .redis_server import free_port

NO_SERVER = (
    "The postgresql variants need PostgreSQL: set TEST_DATABASE_URL to a server the tests "
    "may create databases on, or install it (apt-get install postgresql) so that initdb "
    "and pg_ctl can start a throwaway one."
)


def answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def find_program(name: str) -> str | None:
    """`name` from PATH, else from Debian's /usr/lib/postgresql/<version>/bin."""
    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return shutil.which(name) or (installed[-1] if installed else None)


def server_command(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}"


@contextmanager
def own_postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server on a free port, for this run only."""
    initdb, pg_ctl = find_program("initdb"), find_program("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise RuntimeError(NO_SERVER)
    with tempfile.TemporaryDirectory(prefix="template-postgres-") as home:
        run_as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(home, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", "postgres", "--"]
        data, log, port = f"{home}/data", f"{home}/log", free_port()
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
        server_command(*run_as, initdb, "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
        server_command(*run_as, pg_ctl, "-D", data, "-l", log, "-o", options, "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            server_command(*run_as, pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")


@contextmanager
def running_postgres() -> Iterator[str]:
    """`TEST_DATABASE_URL` when it answers, else a throwaway server."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url and answers(url):
        yield url
        return
    with own_postgres() as url:
        yield url


def create_database(server_url: str, name: str) -> str:
    """Create database `name` on the server; return its URL for the app (asyncpg)."""
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server_url.rpartition("/")
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
