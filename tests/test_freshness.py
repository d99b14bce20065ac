"""Which outputs are fresh: `render --changed` renders only images whose inputs changed, and trusts no report
it cannot match with its PNG and the inputs of now."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from semanticdraw_cli import freshness, report
from semanticdraw_cli.families import presets, registry
from semanticdraw_cli.jobs import plan_call
from semanticdraw_cli.scene.loader import load_scene

from asset_builds import invoke, json_entries, write_mask


@pytest.fixture
def copy(rendered_assets, tmp_path) -> Path:
    """A copy of the rendered folder elsewhere: keys name files relative to the scene, so it is still fresh."""
    target = tmp_path / "checkout"
    shutil.copytree(rendered_assets, target)
    return target


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(registry, "load_adapter", refuse)


def render_changed(folder: Path, *extra: object):
    scenes = sorted((folder / "scenes").glob("*.yaml"))
    device = [] if "--device" in extra else ["--device", "cpu"]
    return invoke("render", *scenes, "-o", folder / "out", "--changed", *device, "--quiet", "--json", *extra)


def verdicts(folder: Path, dtype: str | None = None) -> list[freshness.Verdict]:
    scenes = [(str(path), load_scene(path)) for path in sorted((folder / "scenes").glob("*.yaml"))]
    return freshness.judge(plan_call(scenes, folder / "out", True), "cpu", dtype)


def test_nothing_changed_renders_nothing_and_loads_no_model(copy, no_model):
    result = render_changed(copy)
    assert result.exit_code == 0, result.output
    entries = json_entries(result)
    assert [(Path(e["png"]).name, e["skipped"]) for e in entries] == [("a-5.png", "unchanged"), ("b-5.png", "unchanged")]


def test_touching_the_files_renders_nothing(copy, no_model):
    for path in (copy / "scenes").iterdir():
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # mtime only
    result = render_changed(copy)
    assert result.exit_code == 0, result.output
    assert all(entry.get("skipped") == "unchanged" for entry in json_entries(result))


def test_editing_one_mask_renders_only_the_scene_that_reads_it(copy):
    b_before = (copy / "out" / "b-5.png").stat().st_mtime_ns
    write_mask(copy / "scenes" / "a.png", (0, 0, 64, 20))
    result = render_changed(copy)
    assert result.exit_code == 0, result.output
    entries = {Path(entry["png"]).name: entry for entry in json_entries(result)}
    assert "skipped" not in entries["a-5.png"] and entries["a-5.png"]["network_calls"] > 0
    assert entries["b-5.png"]["skipped"] == "unchanged"
    assert (copy / "out" / "b-5.png").stat().st_mtime_ns == b_before
    assert all(v.fresh for v in verdicts(copy))  # the new a-5 holds the key of the edited mask


def test_a_changed_tool_version_dtype_or_preset_builder_makes_every_output_stale(copy, monkeypatch):
    assert all(v.fresh for v in verdicts(copy))
    assert [v.reasons for v in verdicts(copy, dtype="float16")] == [("dtype float32 -> float16",)] * 2
    with monkeypatch.context() as patched:
        patched.setattr(report, "__version__", "99.0")
        assert [v.reasons for v in verdicts(copy)] == [("semanticdraw version 0.1.0 -> 99.0",)] * 2
    with monkeypatch.context() as patched:
        patched.setattr(presets, "PRESET_VERSION", presets.PRESET_VERSION + 1)
        found = verdicts(copy)
        assert all(len(v.reasons) == 1 and v.reasons[0].startswith("the model changed: checkpoint preset tiny")
                   for v in found) and len(found) == 2


@pytest.mark.parametrize("damage", ["corrupt", "foreign", "other key", "png replaced", "png missing"])
def test_a_damaged_or_foreign_output_is_stale_never_trusted(copy, damage):
    out = copy / "out"
    report_file, png = out / "a-5.json", out / "a-5.png"
    if damage == "corrupt":
        report_file.write_text('{"content_key": "')
    elif damage == "foreign":
        report_file.write_text(json.dumps({"seconds": {}, "network_calls": 1}))
    elif damage == "other key":  # a report copied from b next to a's picture
        shutil.copyfile(out / "b-5.json", report_file)
    elif damage == "png replaced":
        shutil.copyfile(out / "b-5.png", png)
    else:
        png.unlink()
    found = {v.image.png.name: v for v in verdicts(copy)}
    assert found["b-5.png"].fresh
    assert not found["a-5.png"].fresh
    why = " ".join(found["a-5.png"].reasons)
    expected = {"corrupt": "not a readable report", "foreign": "holds no content key",
                "other key": "does not hold the content key", "png replaced": "does not hold the content key",
                "png missing": "a-5.png is missing"}[damage]
    assert expected in why


def test_changed_with_a_shard_renders_only_that_share(copy, no_model):
    result = render_changed(copy, "--shard", "2/2")
    assert result.exit_code == 0, result.output
    assert [Path(entry["png"]).name for entry in json_entries(result)] == ["b-5.png"]


def test_a_stale_image_takes_its_whole_batch_so_its_pixels_are_those_of_a_render_from_scratch(tmp_path):
    from scene_factory import make_scene, rect, region

    from semanticdraw_cli.jobs import Job, JobPlan
    from semanticdraw_cli.outputs import PlannedImage

    scene = make_scene(64, 64, [region("a fox", rect(0, 0, 32, 32))])
    images = [PlannedImage("a", "a", seed, tmp_path / f"a-{seed}.png", tmp_path / f"a-{seed}.json") for seed in (1, 2, 3)]
    plan = JobPlan((Job("a", scene, (1, 2)), Job("a", scene, (3,))), 3, tuple(images))
    found = [freshness.Verdict(image, "k", ("changed",) if image.seed == 2 else ()) for image in images]
    stale, skipped = freshness.stale_plan(plan, found)
    assert [job.seeds for job in stale.jobs] == [(1, 2)]
    assert [image.seed for image in stale.outputs] == [1, 2] and [v.image.seed for v in skipped] == [3]


def test_a_missing_device_is_refused_once_something_is_left_to_render(copy, no_model):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = render_changed(copy, "--device", "cuda")  # the images were rendered on the CPU: stale for cuda
    assert result.exit_code == 2 and "--device cuda: CUDA is not available here" in result.output, result.output


def test_changed_renders_again_after_a_local_controlnets_weights_change(tmp_path):
    """A ControlNet folder is a model, not a file of the scene: its weights enter the key as the checkpoint's do.
    Two real renders (about 7 s on a loaded 2-core machine, the ControlNet's first load included): the command,
    not only the key, must see the edit."""
    from safetensors.torch import load_file, save_file

    from semanticdraw_cli.families import controlnet

    from asset_builds import write_scenes

    scene = write_scenes(tmp_path)[0]
    net = scene.parent / "net"
    shutil.copytree(controlnet.ensure_preset("sd15", "tiny"), net)
    write_mask(scene.parent / "edges.png", (16, 16, 48, 48))
    scene.write_text(scene.read_text() + "control: [{model: ./net, image: edges.png}]\n")

    def render() -> dict:
        result = invoke("render", scene, "-o", tmp_path / "out", "--changed", "--device", "cpu", "--quiet", "--json")
        assert result.exit_code == 0, result.output
        [entry] = json_entries(result)
        return entry

    first = render()
    assert first["network_calls"] > 0 and render()["skipped"] == "unchanged"
    weights_file = net / "diffusion_pytorch_model.safetensors"
    weights = load_file(weights_file)
    weights["controlnet_mid_block.weight"] *= 2
    save_file(weights, weights_file)
    again = render()
    assert "skipped" not in again and again["network_calls"] > 0 and again["content_key"] != first["content_key"]
