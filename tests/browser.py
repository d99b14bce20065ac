"""Headless Chromium driven over the DevTools protocol on a pipe, for tests of the `--serve` page's layout.

No extra package: Chromium reads commands on its fd 3 and writes replies and events on fd 4, each a JSON
message ended by a NUL byte. A small Python launcher moves two pipes onto those numbers and execs the
browser, so no code runs between fork and exec in the test's own process, which has threads.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

LAUNCH = """import os, sys
commands, replies = os.dup(int(sys.argv[1])), os.dup(int(sys.argv[2]))
os.dup2(commands, 3)
os.dup2(replies, 4)
os.set_inheritable(3, True)
os.set_inheritable(4, True)
os.execvp(sys.argv[3], sys.argv[3:])
"""  # the launcher: the browser's DevTools pipe on fds 3 (commands) and 4 (replies), then exec
REPLY_TIMEOUT = 120.0  # seconds: a bound on each wait for the browser, never reached when it works


class Browser:
    """One page in a headless Chromium window of the given size."""

    def __init__(self, executable: str, width: int, height: int, profile: Path):
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        arguments = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                     f"--window-size={width},{height}", "about:blank"]
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(commands_read), str(replies_write), *arguments],
            pass_fds=(commands_read, replies_write), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer, self._last_id, self._session = b"", 0, None
        self._events: list[dict[str, Any]] = []
        page = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self._session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.call("Page.enable")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self._commands)
        os.close(self._replies)

    def open(self, url: str) -> None:
        """Navigate and return once the page's load event fired."""
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page, awaiting it when it is a promise."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} failed in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next()
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self._events.append(reply)

    def wait_for_event(self, method: str) -> dict[str, Any]:
        while True:
            for event in self._events:
                if event.get("method") == method:
                    self._events.remove(event)
                    return event
            self._events.append(self._next())

    def _next(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if not select.select([self._replies], [], [], REPLY_TIMEOUT)[0]:
                raise TimeoutError(f"the browser said nothing for {REPLY_TIMEOUT:.0f} s")
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)
