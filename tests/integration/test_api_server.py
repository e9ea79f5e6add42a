"""``coinfrs serve --workers N`` (``api.server``): N uvicorn processes, each listening on the port with
SO_REUSEPORT, a dead worker started again, all stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(master: int) -> list[int]:
    """The master's worker processes (spawned Python children other than multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{master}/task").glob("*"):
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"resource_tracker" not in cmdline:
                found.append(int(pid))
    return found


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_workers_share_the_port_restart_and_stop(database_url: str) -> None:
    port = _free_port()
    master = subprocess.Popen([sys.executable, "-m", "api.server", "--port", str(port), "--workers", "2",
                               "--log-level", "warning"], cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url})
    try:
        _wait_for(lambda: _healthy(port) and len(_workers(master.pid)) == 2)
        first = _workers(master.pid)
        os.kill(first[0], signal.SIGKILL)  # a worker dies: the master starts another
        _wait_for(lambda: first[0] not in _workers(master.pid) and len(_workers(master.pid)) == 2)
        _wait_for(lambda: _healthy(port))
        for _ in range(10):  # either worker answers on the one port
            assert _healthy(port)
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=20) == 0
        assert not _healthy(port)
    finally:
        if master.poll() is None:
            master.kill()


def test_a_port_already_listened_on_is_refused_in_one_line(database_url: str) -> None:
    """Another server on the port, even one whose sockets allow SO_REUSEPORT as our workers' do (a second
    ``coinfrs serve`` would otherwise bind beside it and take half its clients): exit 1, one ``error:`` line naming
    the address, no traceback, no worker started."""
    port = _free_port()
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", port))
    other.listen()
    coinfrs = Path(sys.executable).with_name("coinfrs")
    try:
        for command in ([str(coinfrs), "serve", "--port", str(port), "--workers", "2"],
                        [str(coinfrs), "serve", "--port", str(port)],
                        [sys.executable, "-m", "api.server", "--port", str(port), "--workers", "2"]):
            done = subprocess.run(command, cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url},
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 1, (command, done.stdout, done.stderr)
            assert done.stderr.strip().splitlines() == [
                f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another server is listening "
                f"there; stop it or choose another --port)"], (command, done.stderr)
            assert "Traceback" not in done.stdout + done.stderr
            assert "Coinfrs API on" not in done.stdout
    finally:
        other.close()
