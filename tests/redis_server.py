"""A Redis for the template's tests and benchmarks: one way to start a throwaway server."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


def answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_redis_server(
    workdir: Path, port: int, *, persist: bool = False
) -> subprocess.Popen[bytes]:
    """Start redis-server on 127.0.0.1:`port` with its files in `workdir`; return once it
    answers. `persist`: write every change to an append-only file, so a restart keeps it."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("Set REDIS_URL to a running Redis, or install redis-server.")
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]
    options += (
        ["--appendonly", "yes", "--appendfsync", "always"] if persist else ["--appendonly", "no"]
    )
    server = subprocess.Popen([executable, *options], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not answers(f"redis://127.0.0.1:{port}/0"):
        assert server.poll() is None, "redis-server exited"
        assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
        time.sleep(0.05)
    return server


@contextmanager
def own_redis() -> Iterator[str]:
    """The URL of a redis-server on a free port, for this run only."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server = start_redis_server(Path(workdir), port)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            server.terminate()
            server.wait(timeout=10)


@contextmanager
def running_redis() -> Iterator[str]:
    """`REDIS_URL` when it answers, else a throwaway server."""
    url = os.environ.get("REDIS_URL")
    if url and answers(url):
        yield url
        return
    with own_redis() as url:
        yield url
