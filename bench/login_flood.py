"""What a flood of logins costs: `uv run python -m bench.login_flood` (about 40 seconds).

Renders the template (background, sqlite, examples), starts the generated app in uvicorn,
and while wrk POSTs /login from 60 connections (each login verifies an argon2id hash: 19
MiB and tens of ms of a core), a client GETs /health/live one request after another and
the app's resident memory is sampled. Two apps alternate, rounds A B then B A: the setting
`PASSWORD_HASHES_AT_ONCE` at its default (4), and at 40, anyio's thread limit, which is
what bounded the hashes before the setting (issue 21: 99 MB -> 395 MB).

Options: --seconds S of load per round (6), --rounds N (2).
"""

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.hashing import health_latencies, percentile, prepare, serve_generated
from bench.run import alternate, install, project_env

CONNECTIONS = 60
LOGIN_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email": "nobody@example.com", "password": "not the password"}'
"""
LIMITS = {"PASSWORD_HASHES_AT_ONCE=4 (default)": "4", "40 (anyio's thread limit)": "40"}


def resident_mb(port: str) -> float:
    """The resident memory of the uvicorn serving `port`, in MB."""
    pids = subprocess.run(
        ["pgrep", "-f", "--", f"--port {port}"], capture_output=True, text=True, check=False
    ).stdout.split()
    total = 0.0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        if "python" in Path(f"/proc/{pid}/cmdline").read_text():
            total += int(status.split("VmRSS:")[1].split()[0]) / 1024
    return total


def flood(base: str, seconds: float) -> dict[str, float]:
    """Logins from `CONNECTIONS` connections for `seconds`: /health/live's latencies,
    the app's memory before and at its peak, logins per second."""
    port = base.rpartition(":")[2]
    before = resident_mb(port)
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], resident_mb(port))

    sampler = threading.Thread(target=sample)
    sampler.start()
    executable = shutil.which("wrk") or install("wrk", "wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(LOGIN_SCRIPT)
        script.flush()
        command = [executable, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "20s"]
        load = subprocess.Popen(
            [*command, "-s", script.name, f"{base}/login"], stdout=subprocess.PIPE, text=True
        )
        time.sleep(0.5)
        latencies = health_latencies(base, seconds - 1)
        output, _ = load.communicate(timeout=seconds + 30)
    stop.set()
    sampler.join()
    time.sleep(2)  # the logins still queued end before the next app is measured
    return {
        "rss_before_mb": before,
        "rss_peak_mb": peak[0],
        "health_p50_ms": percentile(latencies, 50),
        "health_p99_ms": percentile(latencies, 99),
        "logins_per_s": float(output.split("Requests/sec:")[1].split()[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-login-") as tmp:
        workdir = Path(tmp)
        project = prepare(workdir, None)
        bases: dict[str, str] = {}
        contenders: dict[str, Any] = {}
        with ExitStack() as stack:
            for name, limit in LIMITS.items():
                env = project_env(
                    ACME_SHOP_LOG_LEVEL="WARNING",
                    ACME_SHOP_DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/{limit}.db",
                    ACME_SHOP_PASSWORD_HASHES_AT_ONCE=limit,
                )
                bases[name] = stack.enter_context(
                    serve_generated(project, env, workdir / f"uvicorn-{limit}.log")
                )
                contenders[name] = lambda base=bases[name]: flood(base, args.seconds)
            measured = alternate(args.rounds, contenders)
    print(
        f"Login flood: wrk -t1 -c{CONNECTIONS} POST /login (wrong password), "
        "meanwhile GET /health/live"
    )
    print()
    print(
        "| hashes at once | RSS before MB | RSS peak MB | /health/live p50 ms | p99 ms | logins/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, m in measured.items():
        print(
            f"| {name} | {m['rss_before_mb']:.0f} | {m['rss_peak_mb']:.0f} | "
            f"{m['health_p50_ms']:.1f} | {m['health_p99_ms']:.1f} | {m['logins_per_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
