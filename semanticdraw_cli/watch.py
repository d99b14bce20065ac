"""`semanticdraw watch`: render a scene, then again whenever a file it reads is saved (architecture.md §7).

One `Renderer` keeps the model and the stage cache for the whole session, so a re-render recomputes
only the stages whose inputs a save changed. The loop runs in the caller's thread; a
`watched.FileWatcher` thread wakes it. Latest wins: between sampling steps the loop looks for a newer
save and abandons the render for it. Everything the loop does is an `Event` given to its listeners
(the terminal line, the page of `--serve`, tests), in order, in the loop's thread, except `watching`
and `noticed`, which come from the watcher's thread.
"""

from __future__ import annotations

import os
import re
from concurrent import futures
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from semanticdraw_cli import hires, masks as mask_math, outputs, variants
from semanticdraw_cli.errors import MaskError, Problem, RenderError, SceneError, problem_lines
from semanticdraw_cli.preview import draw_preview
from semanticdraw_cli.outputs import write_result
from semanticdraw_cli.render import Prepared, Renderer, RenderResult, StepState
from semanticdraw_cli.scene.composition import wrap_axes
from semanticdraw_cli.scene.reads import scene_reads
from semanticdraw_cli.scene.types import Scene
from semanticdraw_cli.scene.loader import load_scene
from semanticdraw_cli.watch_reroll import RerollRequests
from semanticdraw_cli.watched import FileWatcher, absolute, contents, scene_inputs, signatures

KINDS = (
    "watching",  # the watcher is armed (after a start or a change of folders)
    "noticed",  # a watched file was saved; `files`: which (not yet compared by content)
    "started",  # a render begins; `files`: those whose content changed since the last load
    "phase",  # something slow runs, e.g. the model loads; `text` says what
    "layout",  # NAME-layout.png was written; `outputs`: it
    "step",  # a sampling step is done; `outputs`: NAME-latest.png when --preview-steps replaced it
    "first_pass",  # a hires scene's pass 1, upscaled, replaced NAME-latest.png (`outputs`); pass 2 follows
    "abandoned",  # a newer save (or stop()) ended the render after `step` of `steps`
    "rendered",  # NAME-latest.png and .json are replaced; `seconds`, `recomputed`, `outputs`, `warnings`
    "invalid",  # a save left the scene invalid; `problems`; the last good image stays
)

OUTPUT_NAME = re.compile(r".+-(latest\.png|latest\.json|layout\.png|reroll-base\.png|\d{4,}\.png)")  # what the loop writes


@dataclass(frozen=True)
class Event:
    """One thing the loop did; which fields are set depends on `kind` (see KINDS)."""

    kind: str
    render: int = 0  # the render it concerns, counted from 1
    files: tuple[Path, ...] = ()
    step: int = 0  # steps done
    steps: int = 0  # steps of the render
    recomputed: dict[str, int] = field(default_factory=dict)  # stage -> entries computed (`Prepared.recomputed`)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds; "total": change seen -> image written
    problems: tuple[str, ...] = ()
    outputs: tuple[Path, ...] = ()
    text: str = ""
    regions: tuple[str, ...] = ()  # rendered: the scene's region names (the page's re-roll buttons)
    warnings: tuple[str, ...] = ()  # rendered: the report's, each naming the scene (a region too small to paint)


Listener = Callable[[Event], None]


@dataclass(frozen=True)
class WatchOptions:
    scene: Path  # the scene file as given (.yaml, .psd, .ora)
    out_dir: Path
    overrides: tuple[str, ...] = ()  # --set key=value, applied at each load
    allow_outside: bool = False
    keep: bool = False  # also keep every render as NAME-0001.png, NAME-0002.png, ...
    preview_steps: bool = False  # replace NAME-latest.png with the decoded x0 estimate after each step


class WatchLoop:
    """Render, then re-render after each save that changes what the scene reads, until `stop()`."""

    def __init__(self, options: WatchOptions, renderer: Renderer, listeners: Iterable[Listener] = ()):
        self.options, self.renderer = options, renderer
        self.renders = 0  # renders started
        self._listeners = list(listeners)
        self._wake, self._stop = threading.Event(), threading.Event()
        self._files = scene_inputs(options.scene)
        self._contents: dict[Path, str | None] = {}  # what the files held at the last load
        self._rendered: dict[Path, str | None] = {}  # ... at the last render's start: what a render changed
        self._problems: tuple[str, ...] = ()  # of the last load; () when it loaded
        self._watcher = FileWatcher(self._saved, self._armed)
        self._drawing = futures.ThreadPoolExecutor(1, thread_name_prefix="semanticdraw-layout")
        self._rerolls = RerollRequests()
        self._name: str | None = None  # the scene's name at the last render: its NAME-latest.png is re-rolled

    def reroll(self, names: Sequence[str]) -> None:
        """Re-render only these regions of the latest image and keep the rest (render --reroll). Safe from any thread."""
        self._rerolls.ask(names)
        self._wake.set()

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def stop(self) -> None:
        """End `run` at the next step boundary (or at once when idle). Safe from any thread."""
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Render, then re-render after each change until `stop()`.

        SceneError when the scene does not load at the start (later, an invalid save is an `invalid`
        event); RenderError on a runtime fault (a missing model, no room to write).
        """
        try:
            self._cycle(first=True)
            while not self._stop.is_set():
                self._wake.wait()
                if self._watcher.error is not None:
                    raise RenderError(f"stopped watching the scene's folders: {self._watcher.error}")
                self._cycle()
        finally:
            self._watcher.close()
            self._drawing.shutdown()

    # --- the cycle: compare, load, render -----------------------------------------------------------

    def _cycle(self, first: bool = False) -> None:
        """Load and render what changed since the last load; nothing when no watched content changed."""
        self._wake.clear()
        if self._stop.is_set():
            return
        started = time.perf_counter()
        out = self.options.out_dir
        rerolled = self._rerolls.take()  # taken once, with the copy: a request during this cycle waits for the next
        if rerolled and not (self._name and self._rerolls.copy_latest(watch_outputs(out, self._name)[0], out, self._name)):
            rerolled = ()  # nothing rendered yet to re-roll
        while True:  # read again while a writer is still at work: an editor saving in place can outlast a burst
            before = signatures(self._files)
            current = contents(self._files)
            if current == self._contents and not (first or self._problems or rerolled):
                return
            try:
                scene, error = load_scene(self.options.scene, self.options.overrides,
                                          allow_outside=self.options.allow_outside), None
            except SceneError as refused:
                scene, error = None, refused
            if self._stop.is_set():
                return
            if signatures(self._files) == before:
                break
        self._contents = current
        if error is None:  # the outputs may not replace what the scene (perhaps renamed, or naming new files) reads
            try:
                outputs.refuse_overwriting_inputs(watch_outputs(self.options.out_dir, scene.name),
                                                  scene_reads(self.options.scene, scene))
            except outputs.OutputError as refused:
                error = refused
        if error is None and rerolled:
            extra, problem = self._rerolls.overrides(scene, out, rerolled)
            if problem is not None:
                return self._emit(Event("invalid", self.renders, problems=(problem,)))
            try:
                scene = load_scene(self.options.scene, [*self.options.overrides, *extra],
                                   allow_outside=self.options.allow_outside)
            except SceneError as refused:
                error = refused
        if error is None and variants.has_variants(scene):  # the image's own pick of `{a|b}` (render's default)
            scene = variants.picked_scene(scene, scene.sampler.seed)
        if error is not None:
            if first:
                raise error
            self._invalid(tuple(problem_lines(error.problems)))
            return
        self._problems = ()
        files = scene_inputs(self.options.scene, scene)
        loaded = {**contents(files - current.keys()), **{f: current[f] for f in files & current.keys()}}
        changed = tuple(sorted(f for f in files if loaded[f] != self._rendered.get(f)))
        self._files, self._contents, self._rendered = files, loaded, loaded
        self._watcher.watch(files)
        self._render(scene, changed, {"scene": time.perf_counter() - started}, started)

    def _invalid(self, problems: tuple[str, ...]) -> None:
        """Report the problems (once while they stay the same); watch the folders for any new file."""
        if problems != self._problems:
            self._emit(Event("invalid", self.renders, problems=problems))
        self._problems = problems
        self._watcher.watch(self._files, everything=True)

    def _render(self, scene: Scene, changed: tuple[Path, ...], seconds: dict[str, float], started: float) -> None:
        self.renders, self._name = self.renders + 1, scene.name
        number, out = self.renders, self.options.out_dir
        self._emit(Event("started", number, files=changed))
        png, report, layout_path = watch_outputs(out, scene.name)
        layout = self._drawing.submit(_draw_layout, scene, layout_path)  # beside the prepare and the first step

        def show_layout() -> None:  # once, when it is drawn: after the prepare, else after the first step
            if "layout" not in seconds:
                seconds["layout"] = layout.result()
                self._emit(Event("layout", number, outputs=(layout_path,)))

        try:  # a file the scene names may be rewritten (or gone) since it loaded: wait for the next save
            if scene.hires is not None:  # two passes (hires.py): pass 1, upscaled, is the first picture shown
                prepared, result = self._hires(scene, number, png, layout, show_layout)
                states = None if result is None else [result]
            else:
                prepared = self.renderer.prepare(scene, [scene.sampler.seed], on_phase=self._phase)
                if layout.done():
                    show_layout()
                states = self._sample(prepared, number, png, show_layout)
        except (MaskError, FileNotFoundError) as error:
            self._invalid((str(Problem(str(self.options.scene), "", str(error), hint=getattr(error, "hint", None))),))
            return
        finally:
            futures.wait([layout])  # its file is whole before anything else happens
        seconds.update(prepared.timings)
        if states is None:
            return
        result = states[0] if scene.hires is not None else self.renderer.finish(prepared, states[-1], states)[0]
        seconds["denoise"], seconds["decode"] = result.report["seconds"]["denoise"], result.report["seconds"]["decode"]
        result.report["watch"] = {"render": number, "changed": [str(f) for f in changed], "recomputed": prepared.recomputed}
        start = time.perf_counter()
        write_result(result, png, report)
        kept = (_keep(png, scene.name),) if self.options.keep else ()
        seconds["write"] = time.perf_counter() - start
        seconds["total"] = time.perf_counter() - started
        warnings = tuple(f"{scene.source or scene.name}: {warning}" for warning in result.report.get("warnings", ()))
        self._emit(Event("rendered", number, files=changed, recomputed=dict(prepared.recomputed), seconds=seconds,
                         outputs=(png, report, *kept), regions=tuple(region.name for region in scene.regions),
                         warnings=warnings))

    def _hires(self, scene: Scene, number: int, latest: Path, layout: futures.Future, show_layout: Callable[[], None]
               ) -> tuple[Prepared, RenderResult | None]:
        """Both passes of a hires scene: (the last pass's Prepared, the image; None when abandoned). Pass 1,
        upscaled, replaces NAME-latest.png as soon as it is done."""
        prepared = None

        def run(pass_scene: Scene, seeds: list[int]) -> list[RenderResult] | None:
            nonlocal prepared
            prepared = self.renderer.prepare(pass_scene, seeds, on_phase=self._phase)
            if layout.done():
                show_layout()
            states = self._sample(prepared, number, latest, show_layout)
            return None if states is None else self.renderer.finish(prepared, states[-1], states)

        first = run(hires.pass_one_scene(scene, self.renderer.cache), [scene.sampler.seed])
        if first is None:
            return prepared, None
        _write_picture(latest, Image.fromarray(hires.resize(first[0].image, scene.canvas, scene.hires.upscaler)))
        self._emit(Event("first_pass", number, outputs=(latest,)))
        return prepared, hires.second_pass(self.renderer, scene, first[0], run)

    def _sample(
        self, prepared: Prepared, number: int, latest: Path, after_first_step: Callable[[], None]
    ) -> list[StepState] | None:
        """The step states, or None when a newer save (or `stop()`) abandoned the render between steps."""
        states: list[StepState] = []
        total = prepared.table.steps
        steps = self.renderer.steps(prepared)
        try:
            for state in steps:
                if not states:
                    after_first_step()
                states.append(state)
                previewed = ()
                if self.options.preview_steps and len(states) < total:
                    _write_picture(latest, Image.fromarray(_x0_picture(prepared, state)))
                    previewed = (latest,)
                self._emit(Event("step", number, step=len(states), steps=total, outputs=previewed))
                if self._newer_change():
                    self._emit(Event("abandoned", number, step=len(states), steps=total))
                    return None
        finally:
            steps.close()
        return states

    def _newer_change(self) -> bool:
        """A save changed a watched file since the last load (a touch without new content does not count)."""
        if self._stop.is_set():
            return True
        if not self._wake.is_set():
            return False
        self._wake.clear()
        if contents(self._files) == self._contents:
            return False
        self._wake.set()  # the loop takes the change up at once
        return True

    # --- callbacks -----------------------------------------------------------------------------------

    def _saved(self, files: set[Path]) -> None:
        files = {file for file in files if file in self._files or not self._written_by_us(file)}
        if not files:  # while the scene does not load the whole folder counts, but not our own outputs
            return
        self._wake.set()  # before the event: a listener that hears of the save finds the loop told
        self._emit(Event("noticed", self.renders, files=tuple(sorted(files))))

    def _armed(self) -> None:
        self._wake.set()  # a save may have come before the watch was in place: compare contents
        self._emit(Event("watching", self.renders, files=tuple(sorted(self._files))))

    def _written_by_us(self, file: Path) -> bool:
        return file.parent == absolute(self.options.out_dir) and OUTPUT_NAME.fullmatch(file.name) is not None

    def _phase(self, text: str, _done: int, _total: int | None) -> None:
        if text.startswith(("loading", "building")):
            self._emit(Event("phase", self.renders, text=text))

    def _emit(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)


def watch_outputs(out_dir: Path, name: str) -> tuple[Path, Path, Path]:
    """NAME-latest.png, NAME-latest.json and NAME-layout.png: what each render replaces."""
    return out_dir / f"{name}-latest.png", out_dir / f"{name}-latest.json", out_dir / f"{name}-layout.png"


def _x0_picture(prepared: Prepared, state: StepState) -> np.ndarray:
    """The first image's fused clean-latent estimate, decoded by the scene's preview decoder (the full VAE when it
    names none) and over the background picture, (H, W, 3) uint8."""
    scene = prepared.scene
    pixels = prepared.adapter.decode_preview(state.x0[:1], scene.model, wrap_axes(scene.canvas.wrap))  # (1, H, W, 3)
    if prepared.picture is not None:
        pixels = mask_math.blend_over_background(pixels, prepared.picture, prepared.canvas_masks)
    return pixels[0]


def _draw_layout(scene: Scene, target: Path) -> float:
    """NAME-layout.png (`preview.draw_preview`); the seconds it took."""
    start = time.perf_counter()
    _write_picture(target, draw_preview(scene))
    return time.perf_counter() - start


def _write_picture(target: Path, picture: Image.Image) -> None:
    """A plain PNG, replaced atomically; light compression, since it is replaced again soon."""
    with outputs.atomic_path(target) as temporary:
        picture.save(temporary, format="PNG", compress_level=1)


def _keep(latest: Path, name: str) -> Path:
    """Copy NAME-latest.png to the next free NAME-NNNN.png (numbers continue after earlier sessions')."""
    pattern = re.compile(re.escape(name) + r"-(\d{4,})\.png")
    taken = [int(match[1]) for entry in os.scandir(latest.parent) if (match := pattern.fullmatch(entry.name))]
    target = latest.parent / f"{name}-{max(taken, default=0) + 1:04d}.png"
    with outputs.atomic_path(target) as temporary:
        shutil.copyfile(latest, temporary)
    return target
