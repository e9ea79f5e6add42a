"""A real headless Chromium for tests: open a page, read what it shows (``innerText``: what CSS leaves visible) on
screen and as printed, and print it to PDF. Driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages ending in NUL on file descriptors 3 and 4), so no port, no extra package and no browser download.

Debian's ``chromium`` package (``apt-get install -y chromium``); the flags are the ones known to work on these
machines as root with a closed network. ``find_chromium()`` is None when it is not installed: tests skip then.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Rendered:
    screen_text: str
    """``document.body.innerText`` on screen."""
    print_text: str
    """``document.body.innerText`` with the print media emulated (what a printout shows)."""
    pdf: bytes
    """The page printed to PDF by Chromium (A4)."""
    title: str


class _Pipe:
    def __init__(self, binary: str, profile: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: the pipe ends on fds 3 (commands) and 4 (answers)
            commands, answers = os.dup(to_chrome_r), os.dup(from_chrome_w)  # out of the way of 3 and 4 first
            while commands in (3, 4) or answers in (3, 4):
                commands, answers = os.dup(commands), os.dup(answers)
            os.dup2(commands, 3)
            os.dup2(answers, 4)

        self.proc = subprocess.Popen([binary, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                                      "about:blank"], preexec_fn=fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next = 0

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def render(page: Path, binary: str | None = None, timeout: float = 30) -> Rendered:
    """Open ``page`` (a local file) in headless Chromium: its text on screen, as printed, and its PDF."""
    binary = binary or find_chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="coinfrs-chromium-") as profile:
        pipe = _Pipe(binary, profile)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session)
            deadline = time.monotonic() + timeout
            while pipe.call("Runtime.evaluate", {"expression": "document.readyState", "returnByValue": True},
                            session)["result"].get("value") != "complete":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{page} did not load")
                time.sleep(0.05)

            def text() -> str:
                return pipe.call("Runtime.evaluate", {"expression": "document.body.innerText", "returnByValue": True},
                                 session)["result"]["value"]

            title = pipe.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                              session)["result"]["value"]
            screen = text()
            pipe.call("Emulation.setEmulatedMedia", {"media": "print"}, session)
            printed = text()
            pdf = base64.b64decode(pipe.call("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69,
                                                                  "printBackground": True}, session, timeout)["data"])
            return Rendered(screen, printed, pdf, title)
        finally:
            pipe.close()
