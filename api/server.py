"""Run the read API: uvicorn, one process per core, each with its own listening socket (``SO_REUSEPORT``).

With ``uvicorn --workers N`` every worker accepts from one shared socket, and asyncio accepts up to a hundred
waiting connections per wake-up: the first worker to wake takes most of a burst of keep-alive connections and
keeps them (measured: 33 of 50 clients on one of two workers, so one core saturated while the other idled).
Here each worker binds its own socket to the same port with ``SO_REUSEPORT``, and the kernel spreads new
connections across them.

``serve()`` supervises the workers: a worker that dies is started again; SIGINT/SIGTERM stop them all.
``python -m api.server --port 8000 --workers 2`` runs it without the CLI (the benchmark does).
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

APP = "api.main:app"


def _tcp_socket(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)


class PortUnavailable(Exception):
    """The API cannot listen on the address asked for; the message says why and what to do."""


def ensure_port_free(host: str, port: int) -> None:
    """Refuse, before any worker starts, an address that something already listens on (``PortUnavailable``).

    The probe binds without ``SO_REUSEPORT``, so it fails even when the listener is another Coinfrs API whose
    workers set that option: with it, a second server would bind the same port beside the first and the kernel
    would split the clients between the two."""
    sock = _tcp_socket(host)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT is free
        sock.bind((host, port))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = ("another server is listening there; stop it or choose another --port"
                if exc.errno == errno.EADDRINUSE else "check --host and --port")
        raise PortUnavailable(f"cannot listen on {host}:{port}: {reason} ({hint})") from None
    finally:
        sock.close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other workers may bind too (SO_REUSEPORT)."""
    sock = _tcp_socket(host)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import uvicorn

    config = uvicorn.Config(APP, host=host, port=port, **options)
    config.load()  # import the app first: a socket that listens before the app is loaded would take connections
    # (the kernel spreads them over every SO_REUSEPORT socket) that wait for the whole import, e.g. after a restart
    uvicorn.Server(config).run(sockets=[_listen(host, port)])


def metrics_directory() -> Path:
    """A clean ``PROMETHEUS_MULTIPROC_DIR`` for this server's workers (``api.metrics``): the configured one emptied,
    or a new temporary one. Set in the environment, so the workers (spawned) inherit it."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # a previous server's samples would be counted again
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="coinfrs-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, **options: Any) -> None:
    """Serve the API on ``host:port`` with ``workers`` processes (``options``: more ``uvicorn.Config`` settings,
    e.g. ``log_config``). One worker runs in this process."""
    import uvicorn

    ensure_port_free(host, port)
    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, host=host, port=port, workers=max(1, workers), **options)
        return
    context = multiprocessing.get_context("spawn")
    processes: list[multiprocessing.process.BaseProcess] = []
    stopping = False

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(host, port, options), daemon=False)
        process.start()
        return process

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    created = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    metrics_dir = metrics_directory()  # /metrics aggregates every worker's samples (api.metrics)
    processes = [start() for _ in range(workers)]
    try:
        while not stopping:
            for i, process in enumerate(processes):
                if not process.is_alive() and not stopping:
                    print(f"API worker {process.pid} exited ({process.exitcode}); starting another", file=sys.stderr)
                    processes[i] = start()
            time.sleep(0.5)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # uvicorn shuts down gracefully on SIGTERM
        for process in processes:
            process.join(timeout=15)
            if process.is_alive():
                process.kill()
        if created:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Coinfrs read API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.workers, log_level=args.log_level, access_log=not args.no_access_log,
              timeout_keep_alive=60)
    except PortUnavailable as exc:  # refused before any worker started
        parser.exit(1, f"error: {exc}\n")


if __name__ == "__main__":
    main()
