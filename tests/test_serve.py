"""The page of `watch --serve`: what it serves, its event stream, and a real headless browser following a save."""

from __future__ import annotations

import http.client
import io
import json
import queue
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import Browser
from semanticdraw_cli.serve import PageServer
from semanticdraw_cli.watch import Event
from watch_session import SCENE, Session, save, write_mask

WAIT = 300  # seconds: a bound on each wait, never reached when the page works


@pytest.fixture()
def page():
    server = PageServer(port=0)
    yield server
    server.close()


def get(server: PageServer, path: str, host: str = "127.0.0.1") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(*server.httpd.server_address, timeout=WAIT)
    connection.request("GET", path, headers={"Host": f"{host}:{server.httpd.server_address[1]}"})
    return connection.getresponse()


def picture(path: Path, value: int) -> Path:
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


def rendered(path: Path, render: int, warnings: tuple[str, ...] = ()) -> Event:
    return Event("rendered", render, seconds={"denoise": 0.5, "total": 0.75}, outputs=(path, path.with_suffix(".json")),
                 warnings=warnings)


SMALL = "scene.yaml: regions[0] (<b>dot</b>): no latent pixel at any step (the region is smaller than the latent grid)"


def test_the_page_listens_on_this_machine_only(page):
    assert page.httpd.server_address[0] == "127.0.0.1"
    assert get(page, "/", host="attacker.example").status == 403  # a rebound DNS name
    body = get(page, "/").read().decode()
    assert "EventSource" in body and 'id="latest"' in body and 'id="layout"' in body
    assert get(page, "/latest.png").status == 404  # nothing rendered yet
    assert get(page, "/elsewhere").status == 404


def stalled(server: PageServer) -> socket.socket:
    """A client that connects and sends nothing."""
    return socket.create_connection(server.httpd.server_address, timeout=WAIT)


def test_clients_that_send_nothing_are_closed_after_the_timeout():
    server = PageServer(port=0, timeout=0.2)
    try:
        clients = [stalled(server) for _ in range(3)]
        for client in clients:
            assert client.recv(1) == b""  # the server closed it (the wait is bounded by WAIT, not timed)
            client.close()
        assert get(server, "/").status == 200
    finally:
        server.close()


def test_connections_over_the_cap_are_answered_503_until_one_ends():
    server = PageServer(port=0, timeout=WAIT, max_connections=2)
    try:
        first, second = stalled(server), stalled(server)  # accepted in order: both hold a slot
        assert get(server, "/").status == 503
        first.shutdown(socket.SHUT_WR)  # the request ends empty: the server lets the slot go, then closes
        assert first.recv(1) == b""
        assert get(server, "/").status == 200
        first.close(), second.close()
    finally:
        server.close()


def message(stream: http.client.HTTPResponse) -> dict:
    """The next state the event stream sends."""
    line = stream.readline()
    while not line.startswith(b"data: "):
        line = stream.readline()
    return json.loads(line[len(b"data: "):])


def test_pictures_and_the_event_stream_follow_the_loop(page, tmp_path):
    page.publish(Event("layout", 1, outputs=(picture(tmp_path / "x-layout.png", 10),)))
    stream = get(page, "/events")
    assert stream.getheader("Content-Type") == "text/event-stream"
    assert message(stream)["layout_version"] == 1  # the state at connection
    page.publish(rendered(picture(tmp_path / "x-latest.png", 200), 1))
    shown = message(stream)
    assert shown["image_version"] == 1 and "render 1" in shown["caption"] and "denoise" in shown["timings"]
    assert get(page, "/latest.png").read() == (tmp_path / "x-latest.png").read_bytes()
    assert get(page, "/layout.png").read() == (tmp_path / "x-layout.png").read_bytes()
    page.publish(Event("invalid", 1, problems=("x.yaml:3: not valid YAML",)))
    assert "not valid YAML" in message(stream)["problems"]
    stream.close()


def test_the_event_stream_carries_the_shown_renders_warnings_and_clears_them(page, tmp_path):
    """Issue 26's warnings on the page: a render's replace the last render's, none clears them; a save that does not
    load keeps them, since the last good image stays."""
    stream = get(page, "/events")
    assert message(stream)["warnings"] == []
    page.publish(rendered(picture(tmp_path / "x-latest.png", 200), 1, (SMALL,)))
    assert message(stream)["warnings"] == [SMALL]
    page.publish(Event("invalid", 1, problems=("x.yaml:3: not valid YAML",)))
    assert message(stream)["warnings"] == [SMALL]
    page.publish(rendered(tmp_path / "x-latest.png", 2))
    assert message(stream)["warnings"] == []
    stream.close()


@pytest.mark.slow
def test_a_headless_browser_shows_the_new_image_after_a_save(tmp_path):
    """Chromium loads the page; a save re-renders; the page, told by its event stream, fetches the new image."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from semanticdraw_cli.render import Renderer

    write_mask(tmp_path / "fox.png", 30)
    scene = tmp_path / "scene.yaml"
    scene.write_text(SCENE)
    requests: queue.Queue[str] = queue.Queue()
    server = PageServer(port=0, on_request=requests.put)
    watch = Session(scene, Renderer(device="cpu", dtype="float32"), listener=server.publish)
    process = None
    try:
        watch.ready()
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   f"--user-data-dir={tmp_path / 'profile'}", server.url]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_request(requests, "/events")
        wait_for_request(requests, f"/latest.png?v={server.shown()['image_version']}")  # the first render, shown
        save(scene, SCENE.replace("a tall tree", "a stone tree"))
        watch.wait("rendered", 2)
        version = server.shown()["image_version"]
        wait_for_request(requests, f"/latest.png?v={version}")  # the live page asked for the new image itself
        assert server.shown()["title"] == "semanticdraw watch: render 2"
    finally:
        if process is not None:
            process.kill()
            process.wait(timeout=WAIT)
        watch.close()
        server.close()


BOXES = """(() => {
  const box = (id) => { const e = document.getElementById(id), r = e.getBoundingClientRect();
                        return {shown: e.getClientRects().length > 0, left: r.left, right: r.right, top: r.top,
                                bottom: r.bottom}; };
  return {latest: box("latest"), layout: box("layout"), latest_waiting: box("latest-waiting"),
          layout_waiting: box("layout-waiting"), width: innerWidth, height: innerHeight};
})()"""
BOTH_LOADED = """Promise.all(["latest", "layout"].map((id) => new Promise((done) => {
  const picture = document.getElementById(id);
  if (!picture.hidden) done(); else picture.addEventListener("load", () => done(), {once: true});
})))"""


@pytest.mark.slow
def test_at_1400_by_900_image_and_layout_sit_side_by_side_and_wait_visibly(page, tmp_path):
    """Before the first render each frame says what it waits for; then the 1280×768 render and its wider
    layout picture (the irworobongdo legend panel) share one row of a 1400×900 window."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from semanticdraw_cli.preview import draw_preview
    from semanticdraw_cli.scene.loader import load_scene

    draw_preview(load_scene(Path(__file__).resolve().parents[1] / "scenes" / "irworobongdo.yaml")).save(
        tmp_path / "x-layout.png")
    Image.fromarray(np.full((768, 1280, 3), 180, np.uint8)).save(tmp_path / "x-latest.png")
    with Browser(executable, 1400, 900, tmp_path / "profile") as browser:
        browser.open(page.url)
        waiting = browser.evaluate(BOXES)
        assert waiting["latest_waiting"]["shown"] and waiting["layout_waiting"]["shown"]
        assert not waiting["latest"]["shown"] and not waiting["layout"]["shown"]  # no empty frame, no broken picture
        assert waiting["latest_waiting"]["right"] <= waiting["layout_waiting"]["left"]
        page.publish(Event("layout", 1, outputs=(tmp_path / "x-layout.png",)))
        page.publish(rendered(tmp_path / "x-latest.png", 1))
        browser.evaluate(BOTH_LOADED)
        shown = browser.evaluate(BOXES)
        browser.screenshot(tmp_path / "page.png")  # for a look when this fails
    latest, layout = shown["latest"], shown["layout"]
    assert latest["shown"] and layout["shown"] and not shown["latest_waiting"]["shown"]
    assert latest["top"] == pytest.approx(layout["top"], abs=1)  # one row
    assert latest["right"] <= layout["left"] and layout["right"] <= shown["width"]
    assert max(latest["bottom"], layout["bottom"]) <= shown["height"]  # both whole, without scrolling


WARNINGS_AFTER = """(before) => new Promise((done) => {
  const box = document.getElementById("warnings");
  const check = () => {
    if (box.textContent === before) return;
    observer.disconnect();
    done({text: box.textContent, elements: box.children.length, shown: box.getClientRects().length > 0});
  };
  const observer = new MutationObserver(check);
  observer.observe(box, {childList: true, characterData: true, subtree: true});
  check();
})"""


def warnings_after(browser: Browser, before: str) -> dict:
    """The page's warnings once they differ from `before` (the page's own change event, no polling)."""
    return browser.evaluate(f"({WARNINGS_AFTER})({json.dumps(before)})")


@pytest.mark.slow
def test_the_page_shows_a_renders_warnings_as_text_and_clears_them_after_a_render_without(page, tmp_path):
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    with Browser(executable, 800, 600, tmp_path / "profile") as browser:
        browser.open(page.url)
        page.publish(rendered(picture(tmp_path / "x-latest.png", 200), 1, (SMALL, "scene.yaml: a second warning")))
        shown = warnings_after(browser, "")
        assert shown == {"text": f"warning: {SMALL}\nwarning: scene.yaml: a second warning", "elements": 0,
                         "shown": True}  # the scene's text, never markup
        page.publish(rendered(tmp_path / "x-latest.png", 2))
        assert warnings_after(browser, shown["text"])["text"] == ""


def wait_for_request(requests: queue.Queue[str], path: str) -> None:
    while requests.get(timeout=WAIT) != path:
        pass


def test_a_taken_port_is_one_line_and_exit_2(tmp_path):
    import socket

    from typer.testing import CliRunner

    from semanticdraw_cli.cli.app import app

    scene = tmp_path / "scene.yaml"
    scene.write_text("canvas: {width: 64, height: 64}\nmodel: {checkpoint: tiny}\n"
                     "regions: [{prompt: a red fox, mask: {rect: [0, 0, 32, 32]}}]\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["watch", str(scene), "-o", str(tmp_path / "out"), "--serve", str(port)])
    assert result.exit_code == 2 and f"--serve {port}: cannot listen" in result.output  # before any model loads


def post(server: PageServer, body: bytes, content_type: str = "application/json", host: str = "127.0.0.1"):
    connection = http.client.HTTPConnection(*server.httpd.server_address, timeout=WAIT)
    connection.request("POST", "/reroll", body=body,
                       headers={"Host": f"{host}:{server.httpd.server_address[1]}", "Content-Type": content_type})
    return connection.getresponse()


def test_the_reroll_button_posts_json_and_only_json_reaches_the_loop(page, tmp_path):
    asked = []
    page.on_reroll = asked.append
    event = Event("rendered", 1, seconds={"total": 0.5}, outputs=(picture(tmp_path / "x.png", 9),), regions=("fox", "tree"))
    page.publish(event)
    assert page.shown()["regions"] == ["fox", "tree"]
    assert "re-roll " in get(page, "/").read().decode()
    assert post(page, b'{"regions": ["fox"]}').status == 200
    assert post(page, b'{"regions": ["tree"]}', content_type="text/plain").status == 415  # a form elsewhere
    assert post(page, b'{"regions": ["tree"]}', host="attacker.example").status == 403
    assert post(page, b'{"regions": "tree"}').status == 400
    assert asked == [["fox"]]


@pytest.mark.slow
def test_the_event_stream_shows_a_hires_scenes_first_pass_before_its_image(tmp_path):
    """Issue 26: the page follows pass 1, upscaled, while pass 2 runs (the loop is held at pass 1 until the
    test has looked), then the final image replaces it."""
    import threading

    from semanticdraw_cli.render import Renderer

    scene = tmp_path / "big.yaml"
    scene.write_text("canvas: {width: 128, height: 96}\nmodel: {checkpoint: tiny}\n"
                     "sampler: {steps: [0, 25], seed: 3, tile: {size: 48, stride: 24}}\n"
                     "hires: {scale: 2, strength: 0.5}\nbackground: {prompt: a blue sky}\n"
                     "regions:\n  - {prompt: a red fox, mask: {rect: [16, 16, 56, 48]}}\n")
    server, held, looked = PageServer(port=0), threading.Event(), threading.Event()
    stream = get(server, "/events")

    def hold_at_first_pass(event: Event) -> None:  # after the page's listener: the page has heard of it
        if event.kind == "first_pass":
            held.set()
            looked.wait(timeout=WAIT)

    watch = Session(scene, Renderer(device="cpu", dtype="float32"), listener=server.publish)
    watch.loop.listen(hold_at_first_pass)
    try:
        while (event := watch.events.get(timeout=WAIT)).kind not in ("first_pass", "rendered", "failed"):
            pass
        assert event.kind == "first_pass", event
        held.wait(timeout=WAIT)
        state = json.loads(get(server, "/state.json").read())
        assert state["caption"] == "render 1: pass 1 of 2, upscaled; pass 2 paints over it", state
        while message(stream)["image_version"] != 1:  # the state cannot change while the loop is held
            pass
        first = get(server, "/latest.png?v=1").read()
        assert first == (tmp_path / "out" / "big-latest.png").read_bytes()
        assert Image.open(io.BytesIO(first)).size == (128, 96)
        looked.set()
        assert watch.wait("rendered", 1)
        while not (shown := message(stream))["caption"].startswith("render 1: big-latest.png"):
            pass
        final = get(server, "/latest.png?v=2").read()
        assert shown["image_version"] == 2 and final != first
        assert final == (tmp_path / "out" / "big-latest.png").read_bytes()
    finally:
        looked.set()
        stream.close()
        watch.close()
        server.close()
