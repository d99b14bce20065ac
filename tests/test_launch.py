"""The launch logic without processes: detection, the failure reported for every process, stopping."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from semanticdraw_cli import launch
from semanticdraw_cli.cli import support as cli_support
from semanticdraw_cli.cli.app import app
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.jobs import Job
from semanticdraw_cli.launch import Call, LaunchFailure, Status
from semanticdraw_cli.render import Renderer, RenderResult
from semanticdraw_cli.scene.loader import load_scene

SCENES = Path(__file__).resolve().parent.parent / "scenes"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, False),
    ({"WORLD_SIZE": "1", "LOCAL_RANK": "0"}, False),  # torchrun --nproc_per_node 1: a plain run
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, True),
    ({"OMPI_COMM_WORLD_SIZE": "4"}, True),
    ({"WORLD_SIZE": "x"}, False),
])
def test_a_launcher_is_recognised_by_its_world_size(environ, expected):
    assert launch.launched(environ) is expected


def test_accelerate_launch_cpu_with_several_processes_gets_a_hint():
    one_process = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert "--multi_gpu" in launch.single_process_hint(one_process)
    assert launch.single_process_hint({"ACCELERATE_USE_CPU": "True"}) is None  # --num_processes 1
    assert launch.single_process_hint({**one_process, "WORLD_SIZE": "2"}) is None


def test_jobs_are_named_by_scene_and_seeds():
    scene = object()
    assert launch.describe(Job("a.yaml", scene, (7,))) == "a.yaml (seed 7)"
    assert launch.describe(Job("a.yaml", scene, (7, 8, 9))) == "a.yaml (seeds 7-9)"
    assert launch.describe(Job("a.yaml", scene, (7, 9))) == "a.yaml (seeds 7, 9)"


def group(rank: int = 0, size: int = 2, stopped: bool = False):
    told = []
    return SimpleNamespace(rank=rank, size=size, is_main=rank == 0, device="cpu", stopped=lambda: stopped,
                           stop_others=lambda: told.append(rank), told=told)


def test_the_same_planning_problem_everywhere_reads_as_one():
    statuses = [Status(0, 2, "x.yaml: canvas.width: 65"), Status(1, 2, "x.yaml: canvas.width: 65")]
    with pytest.raises(LaunchFailure) as failure:
        launch._raise_failure(group(0), statuses, planning=True)
    assert (failure.value.message, failure.value.code, failure.value.main) == ("x.yaml: canvas.width: 65", 2, True)


def test_a_problem_on_one_process_names_it_and_every_process_gets_its_code():
    statuses = [Status(0, digest="d"), Status(1, 2, "missing.yaml: no such file")]
    for rank in (0, 1):
        with pytest.raises(LaunchFailure) as failure:
            launch._raise_failure(group(rank), statuses, planning=True)
        assert failure.value.code == 2 and failure.value.main == (rank == 0)
        assert failure.value.message == "process 1 of 2: missing.yaml: no such file"


def test_processes_that_plan_different_calls_are_refused():
    with pytest.raises(LaunchFailure, match="different calls") as failure:
        launch._raise_failure(group(), [Status(0, digest="a"), Status(1, digest="b")], planning=True)
    assert failure.value.code == 2
    launch._raise_failure(group(), [Status(0, digest="a"), Status(1, digest="a")], planning=True)


def test_a_render_failure_names_the_process_and_the_job_and_stopped_processes_are_not_blamed():
    statuses = [Status(0, stopped=True), Status(1, 1, "error: out of GPU memory", "a.yaml (seeds 9-10)"),
                Status(2, 130, "interrupted", "b.yaml (seed 5)")]
    with pytest.raises(LaunchFailure) as failure:
        launch._raise_failure(group(0, 3), statuses, planning=False)
    assert failure.value.code == 1
    assert failure.value.message == ("process 1 of 3 failed on a.yaml (seeds 9-10): error: out of GPU memory\n"
                                     "(process 2 failed too)")


def call(tmp_path: Path) -> Call:
    return Call(plan=None, output=tmp_path, device=None, dtype=None, quiet=True,
                explain=lambda error: (1, f"error: {error}"), entry=lambda result: {"seed": result.seed})


@pytest.fixture
def job():
    scene = load_scene(SCENES / "two-subjects.yaml", ["model.checkpoint=tiny"])
    return Job("two-subjects.yaml", scene, (7, 8))


def test_a_process_told_to_stop_stops_between_steps_and_writes_nothing(tmp_path, job, monkeypatch):
    def one_step(self, scene, out_dir=None, on_step=None, seeds=None, **kwargs):
        on_step(0, 5)
        raise AssertionError("the render went on after the stop")

    monkeypatch.setattr(Renderer, "render", one_step)
    status = launch._render_share(group(1, stopped=True), call(tmp_path), [job], 4)
    assert status.stopped and status.code == 0 and status.entries == ()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("error", "code", "message"), [
    (RenderError("out of GPU memory"), 1, "error: out of GPU memory"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_a_failing_process_tells_the_others_and_reports_its_job(tmp_path, job, monkeypatch, error, code, message):
    def fails(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(Renderer, "render", fails)
    failing = group(1)
    explained = dataclasses.replace(call(tmp_path), explain=cli_support.explain)  # the command's exit codes
    status = launch._render_share(failing, explained, [job], 4)
    assert (status.code, status.message, status.job) == (code, message, "two-subjects.yaml (seeds 7-8)")
    assert failing.told == [1]


def test_written_images_are_reported_without_pixels_and_with_the_process(tmp_path, job, monkeypatch):
    def renders(self, scene, out_dir=None, on_step=None, seeds=None, **kwargs):
        report = {"seconds": {"load": 0.0}, "image_index": 0, "versions": {}}
        return [RenderResult(scene, seed, None, None, dict(report)) for seed in seeds]

    monkeypatch.setattr(Renderer, "render", renders)
    monkeypatch.setattr("semanticdraw_cli.render.write_results", lambda results, out_dir: None)
    status = launch._render_share(group(1), call(tmp_path), [job], 4)
    assert status.entries == ({"seed": 7, "process": 1}, {"seed": 8, "process": 1})
    assert [(r.seed, r.scene, r.image) for r in status.results] == [(7, None, None), (8, None, None)]


# --- the command: a plain run stays plain; a launched one reports once --------------------------------

runner = CliRunner()


def fake_render(self, scene, out_dir=None, on_step=None, seeds=None, **kwargs):
    report = {"seconds": {"total": 1.0, "load": 0.5, "denoise": 0.3, "decode": 0.1}, "network_calls": 5,
              "batch_items": 10, "pairs_active": 3, "pairs_total": 4}
    return [RenderResult(scene, seed, None, None, report, out_dir / f"{scene.name}-{seed}.png",
                         out_dir / f"{scene.name}-{seed}.json") for seed in seeds]


def test_a_plain_render_never_starts_a_process_group(tmp_path, monkeypatch):
    import torch.distributed

    for name in launch.SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launch, "Group", lambda *args: pytest.fail("a plain run joined a process group"))
    monkeypatch.setattr(Renderer, "render", fake_render)
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "-o", str(tmp_path), "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert [entry["seed"] for entry in json.loads(result.stdout)] == [7]
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("main", [True, False])
def test_a_launched_failure_is_reported_by_the_main_process_only(tmp_path, monkeypatch, main):
    def fails(call, summary):
        summary.append({"seed": 7, "process": 0})
        raise LaunchFailure("process 1 of 2 failed on a.yaml (seed 8): error: out of GPU memory", 1, main)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(launch, "render", fails)
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "-o", str(tmp_path), "--json"])
    assert result.exit_code == 1
    if main:
        assert "process 1 of 2 failed on a.yaml (seed 8)" in result.stderr
        assert json.loads(result.stdout) == {"error": "process 1 of 2 failed on a.yaml (seed 8): error: out of GPU "
                                             "memory", "exit_code": 1, "images": [{"seed": 7, "process": 0}]}
    else:
        assert result.stdout == result.stderr == ""


def test_a_launched_render_prints_the_summary_of_every_process_on_the_main_one(tmp_path, monkeypatch):
    def renders(call, summary):
        plan = call.plan()  # the command's own planning: scenes, shard, outputs
        summary += [{"seed": 7, "process": 0}, {"seed": 8, "process": 1}]
        return plan, fake_render(None, plan.jobs[0].scene, tmp_path, seeds=[7, 8])

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(launch, "render", renders)
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "--images", "2", "-o", str(tmp_path),
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"seed": 7, "process": 0}, {"seed": 8, "process": 1}]
    assert "two-subjects-7.png" in result.stderr and "two-subjects-8.png" in result.stderr


@pytest.mark.parametrize(("device", "code", "expected"), [
    ("cuda:1", 2, "--device: 'cuda:1': under a launcher each process renders on its own device"),
    ("cuda", 1, "error: device 'cuda' requested but CUDA is not available"),
])
def test_a_device_a_launch_cannot_honour_is_a_planning_problem(tmp_path, device, code, expected):
    planned = dataclasses.replace(call(tmp_path), device=device, explain=cli_support.explain,
                                  plan=lambda: pytest.fail("planned despite the device"))
    plan, status = launch._plan(group(0), planned)  # this process's device: the CPU
    assert plan is None and status.code == code and status.message.startswith(expected)
