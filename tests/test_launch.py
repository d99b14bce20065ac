"""The launch logic without processes: detection, the failure reported for every process, stopping."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from typer.testing import CliRunner

from semanticdraw_cli import launch
from semanticdraw_cli.cli import support as cli_support
from semanticdraw_cli.cli.app import app
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.jobs import Job, JobPlan, plan_call
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


@pytest.mark.parametrize(("environ", "main"), [
    ({}, True), ({"WORLD_SIZE": "2", "RANK": "0"}, True), ({"WORLD_SIZE": "2", "RANK": "1"}, False),
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}, False),
])
def test_only_the_main_process_reports_even_before_a_group_forms(environ, main):
    assert launch.main_process(environ) is main


def test_accelerate_launch_cpu_with_several_processes_gets_a_hint():
    one_process = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert "--multi_gpu" in launch.single_process_hint(one_process)
    assert launch.single_process_hint({"ACCELERATE_USE_CPU": "True"}) is None  # --num_processes 1
    assert launch.single_process_hint({**one_process, "WORLD_SIZE": "2"}) is None


def group(rank: int = 0, size: int = 2, stopped: bool = False):
    told = []
    recorded = []
    return SimpleNamespace(rank=rank, size=size, is_main=rank == 0, device="cpu",
                           stopped=lambda: "process 0 failed" if stopped else None,
                           stop_others=lambda: told.append(rank), told=told,
                           record=lambda job, entry: recorded.append((job.label, entry)), recorded=recorded)


def call(tmp_path: Path) -> Call:
    return Call(plan=None, output=tmp_path, device=None, dtype=None, quiet=True,
                explain=lambda error: (1, f"error: {error}"), entry=lambda result: {"seed": result.seed})


@pytest.fixture(autouse=True)
def handlers():
    """The signal handlers as they were, back after each test (a share's end ignores SIGINT and SIGTERM)."""
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture
def job():
    scene = load_scene(SCENES / "two-subjects.yaml", ["model.checkpoint=tiny", "sampler.images=2"])
    return Job("two-subjects.yaml", scene, (7, 8))


def plan_of(job: Job, out: Path) -> JobPlan:
    return plan_call([(job.label, job.scene)], out, overwrite=False)


def pretend_written(result, png, report) -> None:
    result.png, result.json = png, report


def test_a_process_told_to_stop_stops_between_steps_and_writes_nothing(tmp_path, job, monkeypatch):
    def one_step(self, scene, out_dir=None, on_step=None, seeds=None, **kwargs):
        on_step(0, 5)
        raise AssertionError("the render went on after the stop")

    monkeypatch.setattr(Renderer, "render", one_step)
    status = launch._render_share(group(1, stopped=True), call(tmp_path), plan_of(job, tmp_path), [job])
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
    status = launch._render_share(failing, explained, plan_of(job, tmp_path), [job])
    assert (status.code, status.message, status.job) == (code, message, "two-subjects.yaml (seeds 7-8)")
    assert status.unfinished == ({"scene": "two-subjects.yaml", "seeds": [7, 8], "process": 1},)
    assert failing.told == [1]
    # the share is over: a launcher's forwarded Ctrl-C or SIGTERM can no longer cut the report short
    assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_written_images_are_reported_without_pixels_and_with_the_process(tmp_path, job, monkeypatch):
    def renders(self, scene, out_dir=None, on_step=None, seeds=None, **kwargs):
        report = {"seconds": {"load": 0.0}, "image_index": 0, "versions": {}}
        return [RenderResult(scene, seed, None, None, dict(report)) for seed in seeds]

    monkeypatch.setattr(Renderer, "render", renders)
    monkeypatch.setattr("semanticdraw_cli.job_loop.write_result", pretend_written)
    status = launch._render_share(group(1), call(tmp_path), plan_of(job, tmp_path), [job])
    assert status.entries == ({"seed": 7, "process": 1}, {"seed": 8, "process": 1})
    assert [(r.seed, r.scene, r.image) for r in status.results] == [(7, None, None), (8, None, None)]


# --- the command: a plain run stays plain; a launched one reports once --------------------------------

runner = CliRunner()


def fake_render(self, scene, out_dir=None, on_step=None, seeds=None, **kwargs):
    report = {"seconds": {"total": 1.0, "load": 0.5, "denoise": 0.3, "decode": 0.1}, "network_calls": 5,
              "batch_items": 10, "pairs_active": 3, "pairs_total": 4}
    results = [RenderResult(scene, seed, None, None, report) for seed in seeds]
    for result in results if out_dir is not None else ():
        pretend_written(result, out_dir / f"{scene.name}-{result.seed}.png", out_dir / f"{scene.name}-{result.seed}.json")
    return results


def test_a_plain_render_never_starts_a_process_group(tmp_path, monkeypatch):
    import torch.distributed

    for name in launch.SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(launch, "Group", lambda *args: pytest.fail("a plain run joined a process group"))
    monkeypatch.setattr(Renderer, "render", fake_render)
    monkeypatch.setattr("semanticdraw_cli.job_loop.write_result", pretend_written)
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "-o", str(tmp_path), "--json", "-q"])
    assert result.exit_code == 0, result.output
    assert [entry["seed"] for entry in json.loads(result.stdout)] == [7]
    assert not torch.distributed.is_initialized()


def test_a_bad_option_under_a_launcher_prints_one_json_document_for_the_launch(tmp_path, monkeypatch):
    for rank, printed in (("0", True), ("1", False)):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", rank)
        result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "--dtype", "float64", "--json"])
        assert result.exit_code == 2 and "--dtype 'float64'" in result.stderr
        assert (json.loads(result.stdout)["exit_code"] == 2) if printed else result.stdout == ""


@pytest.mark.parametrize("main", [True, False])
def test_a_launched_failure_is_reported_by_the_main_process_only(tmp_path, monkeypatch, main):
    def fails(call):
        raise LaunchFailure("process 1 of 2 failed on a.yaml (seed 8): error: out of GPU memory", 1, main,
                            [{"seed": 7, "process": 0}], [{"scene": "a.yaml", "seeds": [8], "process": 1}])

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(launch, "render", fails)
    result = runner.invoke(app, ["render", str(SCENES / "two-subjects.yaml"), "-o", str(tmp_path), "--json"])
    assert result.exit_code == 1
    if main:
        assert "process 1 of 2 failed on a.yaml (seed 8)" in result.stderr
        assert json.loads(result.stdout) == {"error": "process 1 of 2 failed on a.yaml (seed 8): error: out of GPU "
                                             "memory", "exit_code": 1, "images": [{"seed": 7, "process": 0}],
                                             "unfinished": [{"scene": "a.yaml", "seeds": [8], "process": 1}]}
    else:
        assert result.stdout == result.stderr == ""


def test_a_launched_render_prints_the_summary_of_every_process_on_the_main_one(tmp_path, monkeypatch):
    def renders(call):
        plan = call.plan()  # the command's own planning: scenes, shard, outputs
        entries = [{"seed": 7, "process": 0}, {"seed": 8, "process": 1}]
        return launch.Outcome(plan, entries, fake_render(None, plan.jobs[0].scene, tmp_path, seeds=[7, 8]))

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


def test_a_launched_render_refuses_an_output_that_a_scene_reads_before_any_model_loads(tmp_path, monkeypatch):
    def plans(call):  # every process plans the call; the planning problem ends every one of them
        plan, status = launch._plan(group(0), call)
        assert plan is None
        raise LaunchFailure(status.message, status.code, True)

    picture = tmp_path / "fox-5.png"  # named as the scene's first output
    Image.new("RGB", (64, 64), "white").save(picture)
    before = picture.read_bytes()
    scene = tmp_path / "fox.yaml"
    scene.write_text("canvas: {width: 64, height: 64}\nsampler: {seed: 5}\n"
                     "regions: [{name: fox, prompt: a fox, mask: {rect: [0, 0, 8, 8]}}]\n"
                     "background: {image: fox-5.png}\n")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(launch, "render", plans)
    result = runner.invoke(app, ["render", str(scene), "-o", str(tmp_path), "--overwrite", "--model", "tiny"])
    assert result.exit_code == 2, result.output
    assert f"{picture}: the output would overwrite the background picture of {scene}" in result.stderr
    assert picture.read_bytes() == before


# --- a process that dies: the store keeps what it wrote ------------------------------------------------


def bare_group(rank: int, store) -> launch.Group:
    """A Group without a process group: its rank and a store."""
    made = launch.Group.__new__(launch.Group)
    made.rank, made.size, made.is_main, made.store = rank, 2, rank == 0, store
    return made


def test_the_store_keeps_each_image_written_and_whether_a_process_reached_the_end(job):
    from torch.distributed import HashStore

    store = HashStore()
    main, other = bare_group(0, store), bare_group(1, store)
    assert other.stopped() is None and main.recorded(1) == ([], False)
    other.record(job, {"seed": 9, "process": 1})
    assert main.recorded(1) == ([{"job": "two-subjects.yaml", "entry": {"seed": 9, "process": 1}}], False)
    other.reached_the_end()
    assert main.recorded(1)[1] is True
    main.stop_others()
    assert other.stopped() == "process 0 failed"

    class Gone:
        def check(self, keys):
            raise RuntimeError("Connection reset by peer")

    assert bare_group(1, Gone()).stopped() == "it lost the launcher's store (the launcher ended?)"


def test_when_a_process_is_gone_the_main_one_reports_what_the_store_says_it_wrote(job):
    scene = job.scene
    runs = [[Job("a.yaml", scene, (7,)), Job("a.yaml", scene, (8,))],
            [Job("a.yaml", scene, (9,)), Job("a.yaml", scene, (10,))]]

    def lost(status):
        raise RenderError("process 0 lost the other processes (Connection closed by peer)")

    main = group(0)
    main.exchange, main.reached_the_end = lost, lambda: None
    main.recorded = lambda rank: ([{"job": "a.yaml", "entry": {"seed": 9, "process": 1}}], False)
    own = Status(0, entries=({"seed": 7, "process": 0}, {"seed": 8, "process": 0}))
    statuses = launch._final_exchange(main, own, runs)
    assert statuses[0] is own
    assert (statuses[1].code, statuses[1].job) == (1, "a.yaml (seed 10)")
    assert statuses[1].message.startswith("ended before reporting (killed, or it crashed)")
    assert statuses[1].entries == ({"seed": 9, "process": 1},)
    assert statuses[1].unfinished == ({"scene": "a.yaml", "seeds": [10], "process": 1},)
    other = group(1)
    other.exchange, other.reached_the_end = lost, lambda: None
    with pytest.raises(LaunchFailure) as failure:  # the others report nothing
        launch._final_exchange(other, Status(1), runs)
    assert failure.value.main is False and failure.value.code == 1
