"""A live API server for tests: ``python -m api.server`` (what ``coinfrs serve`` runs) in its own process on a free
port, against the test database; stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the API server exited with {process.returncode}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the API server at {base_url} did not answer /health within {timeout} s")


@contextmanager
def live_api(database_url: str, *, workers: int = 1, env: dict[str, str] | None = None,
             stderr: int | None = subprocess.DEVNULL) -> Iterator[str]:
    """The base URL of a running API server (``workers`` processes) on the test database."""
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": database_url, **(env or {})}
    process = subprocess.Popen([sys.executable, "-m", "api.server", "--port", str(port), "--workers", str(workers),
                                "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=environment,
                               stderr=stderr)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
