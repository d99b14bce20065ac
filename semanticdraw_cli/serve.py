"""The page of `watch --serve`: the latest image beside the layout, updated by server-sent events.

A standard-library HTTP server in a daemon thread, bound to 127.0.0.1 only. It serves the page, the two
pictures the watch loop writes (read at each request, so a request never sees half a file: the loop
replaces them atomically) and `/events`, a server-sent event stream that says when either changed, what
the last render took and what it warned of. Requests whose Host header is not this machine are refused, so a
web page elsewhere cannot reach the server through a rebound DNS name.

Clients are bounded: each connection's socket has a timeout (`SERVE_REQUEST_TIMEOUT`), so one that sends
nothing, or stops reading its event stream, is closed instead of holding a thread for ever; and at most
`SERVE_MAX_CONNECTIONS` are served at once, the rest answered 503 at once.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from semanticdraw_cli.defaults import SERVE_MAX_CONNECTIONS, SERVE_PORT, SERVE_REQUEST_TIMEOUT

HOST = "127.0.0.1"
KEEPALIVE_SECONDS = 15.0  # an SSE comment this often, so proxies and browsers keep the stream open
LOCAL_NAMES = ("127.0.0.1", "localhost")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>semanticdraw watch</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { background: #1b1b1b; color: #ddd; font: 14px system-ui, sans-serif; margin: 16px; }
main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 16px; align-items: start; }
@media (max-width: 800px) { main { grid-template-columns: minmax(0, 1fr); } }
figure { margin: 0; min-width: 0; }
.frame { display: grid; place-items: center; min-height: 200px; border: 1px solid #444; background: #282828; }
.frame img { display: block; width: 100%; height: auto; max-height: calc(100vh - 120px); object-fit: contain; }
.frame img[hidden], .frame .waiting[hidden] { display: none; }
.frame:has(img:not([hidden])) { min-height: 0; }
.waiting { color: #888; padding: 24px; text-align: center; }
figcaption, #status { color: #aaa; margin-top: 6px; } pre { color: #bbb; } #problems { color: #f88; }
#warnings { color: #fc6; }
</style></head>
<body>
<main>
  <figure><div class="frame"><img id="latest" alt="latest render" hidden><span class="waiting" id="latest-waiting">
    waiting for the first render</span></div><figcaption id="caption">waiting for the first render</figcaption></figure>
  <figure><div class="frame"><img id="layout" alt="layout" hidden><span class="waiting" id="layout-waiting">
    waiting for the layout</span></div><figcaption>layout</figcaption></figure>
</main>
<p id="rerolls"></p>
<pre id="problems"></pre>
<pre id="warnings"></pre>
<pre id="timings"></pre>
<p id="status">connecting</p>
<script>
const byId = (id) => document.getElementById(id);
for (const id of ["latest", "layout"]) {
  byId(id).onload = () => { byId(id).hidden = false; byId(id + "-waiting").hidden = true; };
}
const source = new EventSource("/events");
source.onopen = () => { byId("status").textContent = "live: the page follows each save"; };
source.onerror = () => { byId("status").textContent = "not connected: is semanticdraw watch still running?"; };
source.onmessage = (message) => {
  const shown = JSON.parse(message.data);
  if (shown.image) byId("latest").src = "/latest.png?v=" + shown.image_version;
  if (shown.layout) byId("layout").src = "/layout.png?v=" + shown.layout_version;
  byId("caption").textContent = shown.caption;
  byId("timings").textContent = shown.timings;
  byId("problems").textContent = shown.problems;
  byId("warnings").textContent = shown.warnings.map((warning) => "warning: " + warning).join("\\n");
  document.title = shown.title;
  const buttons = byId("rerolls");
  if (buttons.dataset.regions !== JSON.stringify(shown.regions)) {
    buttons.dataset.regions = JSON.stringify(shown.regions);
    buttons.replaceChildren(...shown.regions.map((name) => {
      const button = document.createElement("button");
      button.textContent = "re-roll " + name;
      button.onclick = () => fetch("/reroll", {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify({regions: [name]})});
      return button;
    }));
  }
};
</script>
</body></html>
"""


class PageServer:
    """The page's state and its HTTP server; `publish` takes the watch loop's events."""

    def __init__(self, port: int = SERVE_PORT, on_request: Callable[[str], None] | None = None,
                 timeout: float = SERVE_REQUEST_TIMEOUT, max_connections: int = SERVE_MAX_CONNECTIONS):
        self.on_request = on_request  # called with each request's path (tests follow the browser with it)
        self._changed = threading.Condition()
        self._closed = False
        self._shown: dict[str, Any] = {"image": None, "layout": None, "image_version": 0, "layout_version": 0,
                                       "caption": "waiting for the first render", "timings": "",
                                       "title": "semanticdraw watch", "problems": "", "regions": [],
                                       "warnings": []}  # the shown render's, as the terminal prints them
        self.on_reroll: Callable[[list[str]], None] | None = None  # the page's re-roll button (watch.WatchLoop.reroll)
        handler = type("_TimedHandler", (_Handler,), {"timeout": timeout})  # socket timeout per connection
        self.httpd = _BoundedServer((HOST, port), handler, max_connections)  # OSError when the port is taken
        self.httpd.daemon_threads = True
        self.httpd.page = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="semanticdraw-serve", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.httpd.server_address[1]}/"

    def publish(self, event: Any) -> None:
        """Follow the watch loop: a new layout, a preview step, a hires scene's first pass, a finished render
        with its warnings, which replace the last render's (duck-typed `watch.Event`)."""
        if event.kind == "layout":
            self._update(layout=os.path.abspath(event.outputs[0]), layout_version=self._shown["layout_version"] + 1)
        elif event.kind == "step" and event.outputs:
            self._update(image=os.path.abspath(event.outputs[0]), image_version=self._shown["image_version"] + 1,
                         caption=f"render {event.render}: step {event.step} of {event.steps}")
        elif event.kind == "first_pass":
            self._update(image=os.path.abspath(event.outputs[0]), image_version=self._shown["image_version"] + 1,
                         caption=f"render {event.render}: pass 1 of 2, upscaled; pass 2 paints over it")
        elif event.kind == "rendered":
            seconds = event.seconds
            self._update(image=os.path.abspath(event.outputs[0]), image_version=self._shown["image_version"] + 1,
                         caption=f"render {event.render}: {Path(event.outputs[0]).name}, "
                                 f"image in {seconds.get('total', 0.0):.2f} s",
                         timings="\n".join(f"{phase:>8} {value:7.3f} s" for phase, value in seconds.items()),
                         title=f"semanticdraw watch: render {event.render}", problems="", regions=list(event.regions),
                         warnings=list(event.warnings))
        elif event.kind == "abandoned":
            self._update(caption=f"render {event.render} abandoned after step {event.step} for a newer save")
        elif event.kind == "invalid":
            self._update(problems="the last save does not load; the image is the last good one:\n"
                                  + "\n".join(event.problems))

    def shown(self) -> dict[str, Any]:
        with self._changed:
            return dict(self._shown)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _update(self, **values: Any) -> None:
        with self._changed:
            self._shown.update(values)
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_for_change(self, after: dict[str, Any] | None) -> dict[str, Any] | None:
        """The state once it differs from `after` (None: at once); None when closed or on a keep-alive tick."""
        with self._changed:
            if after is not None:
                self._changed.wait_for(lambda: self._closed or self._shown != after, timeout=KEEPALIVE_SECONDS)
            return None if self._closed or self._shown == after else dict(self._shown)


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once; one more is answered 503 and closed."""

    BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 (the socketserver signature)
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(self.BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: give the slot back
            self._slots.release()
            raise

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """Quiet for a client that went away or timed out; a bug in a handler keeps its traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        """The handler, then the slot back before the socket closes (a client that sees it closed may reconnect)."""
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._slots.release()
            self.shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server_version = "semanticdraw"

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        page: PageServer = self.server.page  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if page.on_request is not None:
            page.on_request(self.path)
        if self.headers.get("Host", "").rsplit(":", 1)[0] not in LOCAL_NAMES:
            self.send_error(HTTPStatus.FORBIDDEN, "only this machine may read this page")
        elif path == "/":
            self._send(PAGE.encode(), "text/html; charset=utf-8")
        elif path in ("/latest.png", "/layout.png"):
            self._send_file(page.shown()["image" if path == "/latest.png" else "layout"])
        elif path == "/state.json":
            self._send(json.dumps(page.shown()).encode(), "application/json")
        elif path == "/events":
            self._stream(page)
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        """`/reroll` with a JSON body {"regions": [NAME, ...]}. Only as JSON: a page elsewhere cannot send that
        type to this machine without a preflight, which this server never grants."""
        page: PageServer = self.server.page  # type: ignore[attr-defined]
        if self.headers.get("Host", "").rsplit(":", 1)[0] not in LOCAL_NAMES:
            return self.send_error(HTTPStatus.FORBIDDEN, "only this machine may use this page")
        if self.path != "/reroll" or page.on_reroll is None:
            return self.send_error(HTTPStatus.NOT_FOUND)
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self.send_error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send application/json")
        try:
            names = json.loads(self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 65536)))["regions"]
        except (ValueError, KeyError, TypeError):
            names = None
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            return self.send_error(HTTPStatus.BAD_REQUEST, 'expected {"regions": [NAME, ...]}')
        page.on_reroll(names)
        self._send(b"{}", "application/json")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the http.server signature)
        """Quiet: the terminal belongs to the watch loop's lines."""

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _send_file(self, name: str | None) -> None:
        try:
            body = Path(name).read_bytes() if name else None
        except OSError:
            body = None
        if body is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not written yet")
        else:
            self._send(body, "image/png")

    def _stream(self, page: PageServer) -> None:
        """Server-sent events: the state now, then each change, until the client or the server goes."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        last = None
        try:
            while True:
                shown = page.wait_for_change(last)
                if shown is not None:
                    self.wfile.write(f"data: {json.dumps(shown)}\n\n".encode())
                    last = shown
                elif page.closed:
                    return
                else:
                    self.wfile.write(b": keep-alive\n\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):  # gone, or stopped reading
            return
