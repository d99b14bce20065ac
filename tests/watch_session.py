"""Watching a scene in tests: a scene with a mask file, editor-style saves, and a WatchLoop in a thread."""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from semanticdraw_cli.render import Renderer
from semanticdraw_cli.watch import Event, WatchLoop, WatchOptions

WAIT = 300  # seconds: a bound on each wait for an event, never reached when the loop works

SCENE = """\
canvas: {width: 64, height: 64}
model: {checkpoint: tiny}
sampler: {steps: [0, 25], seed: 3}
background: {prompt: a blue sky}
regions:
  - {name: fox, prompt: a red fox, mask: fox.png}
  - {name: tree, prompt: a tall tree, mask: {rect: [32, 0, 32, 64]}}
"""


def write_mask(path: Path, right: int) -> None:
    mask = np.zeros((64, 64), np.uint8)
    mask[8:56, 4:right] = 255
    Image.fromarray(mask).save(path)


def save(path: Path, text: str) -> None:
    """Save as many editors do: write a temporary file, then rename it over the original."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    os.replace(temporary, path)


class Session:
    """A WatchLoop in a thread; its events in a queue the test takes them from, in order."""

    def __init__(self, scene: Path, renderer: Renderer, listener=None, out: Path | None = None, **options):
        self.out = out or scene.parent / "out"
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        self.loop = WatchLoop(WatchOptions(scene, self.out, **options), renderer, [self.events.put])
        if listener is not None:
            self.loop.listen(listener)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as error:  # the test thread re-raises it
            self.error = error
            self.events.put(Event("failed", text=repr(error)))

    def wait(self, kind: str, render: int | None = None) -> Event:
        """The next event of this kind (and render); earlier events are kept in `seen`."""
        while True:
            event = self.events.get(timeout=WAIT)
            self.seen.append(event)
            if event.kind == "failed":
                raise AssertionError(f"the loop failed: {event.text}") from self.error
            if event.kind == kind and (render is None or event.render == render):
                return event

    def ready(self) -> Event:
        """After the first render, with the watcher armed: saves from now on are seen."""
        rendered = self.wait("rendered", 1)
        if not any(event.kind == "watching" for event in self.seen):
            self.wait("watching")
        return rendered

    def kinds(self, render: int) -> list[str]:
        return [event.kind for event in self.seen if event.render == render and event.kind not in ("noticed", "watching")]

    def close(self) -> None:
        self.loop.stop()
        self.thread.join(timeout=WAIT)
        assert not self.thread.is_alive()
