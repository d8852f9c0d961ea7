"""A Redis for the template's tests: `REDIS_URL` when it answers, else a throwaway server."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

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


@contextmanager
def running_redis() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url and answers(url):
        yield url
        return
    executable = shutil.which("redis-server")
    if executable is None:
        raise RuntimeError("Set REDIS_URL to a running Redis, or install redis-server.")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        server = subprocess.Popen(
            [executable, *options, "--dir", workdir], stdout=subprocess.DEVNULL
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            deadline = time.monotonic() + 10
            while not answers(url):
                assert server.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
                time.sleep(0.05)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=10)
