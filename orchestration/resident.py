"""The resident close: a process that has imported Dagster, Great Expectations and the close once, and forks a fresh
child for every `coinfrs close` (the pattern of Rails' Spring preloader).

A new `coinfrs close` process pays ~2 s of Dagster imports and 4-6 s of Great Expectations imports before it does
anything; a day's close itself takes ~1 s. With `coinfrs resident start` running, the `coinfrs` command (this
module's ``main``, importing the standard library only) hands its command line, environment, working directory and
its own stdin/stdout/stderr (file descriptors passed over a unix socket) to the resident process, which forks; the
child runs the ordinary CLI exactly as a new process would (the client's environment, not the resident's; settings
read afresh; no connection or thread inherited) and writes straight to the client's terminal; the client forwards
Ctrl-C/SIGTERM to the child and exits with its exit code. Every close runs in a process of its own, so two at once
are as safe as two CLI processes (the per-entity lock, ``warehouse/locks.py``).

Without a resident process (or for any command but ``close``) the command runs in-process as before. The resident
process stops itself, and the command runs in-process, when code it loaded has changed since it started (a
``git pull``, a reinstall). ``COINFRS_RESIDENT=0`` bypasses it. Its socket sits in the runtime directory, named
after the checkout and the data directory, readable by its user only; both ends check the other's user id.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FORWARDED_COMMANDS = frozenset({"close"})  # the commands worth forking for (they import Dagster and GX)
_MAX_MESSAGE = 1 << 20
_FDS = 3  # stdin, stdout, stderr


# ----------------------------------------------------------------------------- shared


def socket_path(env: dict[str, str] | os._Environ = os.environ) -> Path:
    """Per user, checkout, interpreter and data directory (COINFRS_DATA_DIR, else ``<checkout>/.coinfrs``)."""
    data_dir = env.get("COINFRS_DATA_DIR") or str(PROJECT_ROOT / ".coinfrs")
    key = hashlib.sha256(f"{PROJECT_ROOT}|{sys.executable}|{Path(data_dir).resolve()}".encode()).hexdigest()[:16]
    runtime = env.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(runtime) / f"coinfrs-{os.getuid()}-{key}.sock"


def _send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    frame = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [frame], fds)
    else:
        sock.sendall(frame)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = b""
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("the other end closed the connection")
        chunks += chunk
    return chunks


def _recv(sock: socket.socket, *, fds: int = 0) -> tuple[dict, list[int]]:
    received: list[int] = []
    if fds:  # the header and the descriptors arrive in one message
        head, received, _, _ = socket.recv_fds(sock, 4, fds)
        head += _recv_exact(sock, 4 - len(head)) if len(head) < 4 else b""
    else:
        head = _recv_exact(sock, 4)
    (size,) = struct.unpack("!I", head)
    if size > _MAX_MESSAGE:
        raise ConnectionError("message too large")
    return json.loads(_recv_exact(sock, size)), list(received)


def _peer_uid(sock: socket.socket) -> int:
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


# ----------------------------------------------------------------------------- client (the `coinfrs` command)


def main() -> None:
    """The `coinfrs` command: through the resident process when one serves this checkout, else in-process."""
    args = sys.argv[1:]
    if args[:1] and args[0] in FORWARDED_COMMANDS and os.environ.get("COINFRS_RESIDENT", "1") != "0":
        code = run_in_resident(args)
        if code is not None:
            sys.exit(code)
    from orchestration.cli import main as cli_main

    cli_main()


def run_in_resident(args: list[str]) -> int | None:
    """The command's exit code, run by a child of the resident process; None when no resident process can take it
    (nothing has run: the caller runs it in-process)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(socket_path()))
        if _peer_uid(sock) != os.getuid():
            return None
        _send(sock, {"argv": args, "env": dict(os.environ), "cwd": os.getcwd()}, fds=[0, 1, 2])
        first, _ = _recv(sock)
    except (OSError, ConnectionError, ValueError):
        sock.close()
        return None
    if "pid" not in first:  # stale: the resident process exits, this command runs in-process
        sock.close()
        return None
    child = int(first["pid"])

    def forward(signum, _frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        done, _ = _recv(sock)
        return int(done["exit"])
    except (OSError, ConnectionError, ValueError, KeyError):
        print("error: the resident close process ended without an exit code (see `coinfrs resident status`)",
              file=sys.stderr)
        return 1
    finally:
        sock.close()


def ping(path: Path | None = None, timeout: float = 2.0) -> dict | None:
    """The resident process's status, or None when none answers at ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path or socket_path()))
        _send(sock, {"op": "status"}, fds=[0, 1, 2])
        reply, _ = _recv(sock)
        return reply
    except (OSError, ConnectionError, ValueError):
        return None
    finally:
        sock.close()


def stop(path: Path | None = None) -> bool:
    """Ask the resident process to stop; whether one answered. Either way no socket is left behind that nothing
    answers on (a process killed with SIGKILL, here or before, cannot remove its own)."""
    where = path or socket_path()
    try:
        return _stop(where)
    finally:
        if where.exists() and ping(where, timeout=0.5) is None:
            where.unlink(missing_ok=True)


def _stop(path: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5.0)
    try:
        sock.connect(str(path))
        _send(sock, {"op": "stop"}, fds=[0, 1, 2])
        answer, _ = _recv(sock)
    except (OSError, ConnectionError, ValueError):
        return False
    finally:
        sock.close()
    pid = answer.get("stopping")
    if isinstance(pid, int) and pid > 1:  # gone when `stop` returns: wait for it, then make sure
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    return True


STOP_WAIT_SECONDS = 10.0


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie no longer does: it waits only for a parent that may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# ----------------------------------------------------------------------------- server (`coinfrs resident start`)


def _preload() -> dict[str, str]:
    """Import what a close imports; the environment defaults those imports set (``os.environ.setdefault`` at import
    time), which every child applies under its client's environment as a new process would."""
    before = dict(os.environ)
    # libraries only for the command line: its modules create their rich Consoles at import, and a Console made
    # here would keep this process's terminal (none) instead of the client's
    import rich.console  # noqa: F401
    import rich.live  # noqa: F401
    import rich.status  # noqa: F401
    import rich.table  # noqa: F401
    import typer  # noqa: F401

    import orchestration.close_runner  # noqa: F401  (dagster, the assets, the packages)
    import orchestration.chain_reclose  # noqa: F401
    import reconciliation.alerts  # noqa: F401

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401
    import great_expectations.expectations  # noqa: F401

    _warm_up()
    return {k: v for k, v in os.environ.items() if k not in before}


def _warm_up() -> None:
    """Run what a close runs lazily, without a database: a partitioned asset with a check materialized on an
    in-memory Dagster instance, the storage modules of the CLI's instance, a Great Expectations context."""
    import warnings

    import dagster as dg
    import dagster_postgres  # noqa: F401  (the CLI's instance: orchestration/instance.py)
    import great_expectations as gx
    import psycopg2  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg2  # noqa: F401
    from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation

    from orchestration.close_runner import QUIET_LOGS

    days = dg.DailyPartitionsDefinition(start_date="2020-01-01")

    @dg.asset(partitions_def=days, check_specs=[dg.AssetCheckSpec("warm", asset="resident_warm_up",
                                                                  partitions_def=days)])
    def resident_warm_up(context):  # no annotations: this module's are strings, the local names unresolvable
        context.log_event(AssetCheckEvaluation(asset_key=context.asset_key, check_name="warm", passed=True,
                                               partition=context.partition_key))
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(check_name="warm", passed=True)])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with dg.DagsterInstance.ephemeral() as instance:
            dg.materialize([resident_warm_up], instance=instance, partition_key="2020-01-01", run_config=QUIET_LOGS)
        gx.get_context(mode="ephemeral")


def _loaded_files() -> dict[str, float]:
    """The project's own modules loaded now, with their modification times."""
    files = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(str(PROJECT_ROOT)) and "/.venv/" not in path:
            try:
                files[path] = os.stat(path).st_mtime
            except OSError:
                files[path] = -1.0
    return files


def _stale(files: dict[str, float]) -> bool:
    stamp = PROJECT_ROOT / ".venv" / ".installed"  # `make install` touches it
    for path, mtime in [*files.items(), (str(stamp), files.get(str(stamp), -1.0))]:
        try:
            if os.stat(path).st_mtime != mtime:
                return True
        except OSError:
            if mtime != -1.0:
                return True
    return False


def serve(path: Path | None = None, *, idle_minutes: float = 60.0) -> None:
    """Preload, listen on the socket, fork a child per request. Runs until asked to stop, its code is stale, or
    ``idle_minutes`` pass without a request (0: no limit)."""
    path = path or socket_path()
    started = time.time()
    defaults = _preload()
    files = _loaded_files()
    stamp = PROJECT_ROOT / ".venv" / ".installed"
    files[str(stamp)] = os.stat(stamp).st_mtime if stamp.exists() else -1.0
    import threading

    if threading.active_count() > 1:  # a fork copies only this thread: a lock another holds would never be freed
        print(f"not serving: {threading.active_count() - 1} thread(s) started while preloading", flush=True)
        return
    if ping(path) is not None:
        print(f"another resident close process answers on {path}: not starting", flush=True)
        return
    path.unlink(missing_ok=True)  # a socket left by a process that was killed
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(16)
    listener.settimeout(idle_minutes * 60 if idle_minutes > 0 else None)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"resident close process {os.getpid()} ready on {path} in {time.time() - started:.1f}s", flush=True)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                print(f"no request for {idle_minutes:g} minutes: stopping", flush=True)
                return
            conn.settimeout(None)
            if _peer_uid(conn) != os.getuid():
                conn.close()
                continue
            if _stale(files):
                _send(conn, {"stale": True})
                conn.close()
                print("code changed since start: stopping", flush=True)
                return
            if os.fork() == 0:
                listener.close()
                _child(conn, defaults, started)  # never returns
            conn.close()
    finally:
        listener.close()
        path.unlink(missing_ok=True)


def _child(conn: socket.socket, defaults: dict[str, str], started: float) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        request, fds = _recv(conn, fds=_FDS)
        if request.get("op") == "status":
            _send(conn, {"pid": os.getppid(), "started": started, "modules": len(sys.modules)})
            os._exit(0)
        if request.get("op") == "stop":
            _send(conn, {"stopping": os.getppid()})
            os.kill(os.getppid(), signal.SIGTERM)
            os._exit(0)
        for target, fd in enumerate(fds[:_FDS]):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        for key, value in defaults.items():
            os.environ.setdefault(key, value)
        time.tzset()
        os.chdir(request["cwd"])
        sys.argv = ["coinfrs", *request["argv"]]
        from warehouse.settings import get_settings

        get_settings.cache_clear()
        _send(conn, {"pid": os.getpid()})
        from orchestration.cli import main as cli_main

        try:
            cli_main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
        code = 1
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()  # as a new process ends (the embedded server's handle, logging)
        except BaseException:  # noqa: BLE001
            pass
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            _send(conn, {"exit": code})
        except Exception:  # noqa: BLE001
            pass
        os._exit(code)


if __name__ == "__main__":  # `python -m orchestration.resident [idle minutes]`: started by `coinfrs resident start`
    serve(idle_minutes=float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
