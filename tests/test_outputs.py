"""The output planner and the atomic writer: clashes, existing files, bad folders, temporaries a kill leaves."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from semanticdraw_cli import outputs
from semanticdraw_cli.outputs import OutputError, atomic_path, check_output_name, plan_render, remove_stale_temporaries
from semanticdraw_cli.scene.loader import load_scene

SCENE = "canvas: {width: 64, height: 48}\nsampler: {seed: 5}\nregions:\n  - {prompt: a fox, mask: {rect: [0, 0, 32, 48]}}\n"


def scene_file(folder: Path, name: str = "x.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(SCENE)
    return folder / name


def job(path: Path, seeds=(5,)):
    return (str(path), load_scene(path), list(seeds))


def problems(excinfo) -> str:
    return "\n".join(str(p) for p in excinfo.value.problems)


def test_same_named_scenes_from_two_folders_are_refused_naming_both(tmp_path):
    a, b = scene_file(tmp_path / "a"), scene_file(tmp_path / "b")
    with pytest.raises(OutputError) as excinfo:
        plan_render([job(a), job(b)], tmp_path / "out", overwrite=True)
    assert f"{a} and {b} would both write x-5.png" in problems(excinfo)
    assert not (tmp_path / "out").exists()  # nothing is created for a refused call


def test_the_same_scene_twice_is_refused(tmp_path):
    a = scene_file(tmp_path)
    with pytest.raises(OutputError) as excinfo:
        plan_render([job(a, (5, 6)), job(a, (5, 6))], tmp_path / "out", overwrite=False)
    assert f"{a} is given twice: both would write x-5.png, x-6.png" in problems(excinfo)


def test_a_clash_in_another_shard_of_the_call_is_refused_too(tmp_path):
    a, b = scene_file(tmp_path / "a"), scene_file(tmp_path / "b")
    with pytest.raises(OutputError, match="would both write x-5.png"):
        plan_render([job(a)], tmp_path / "out", overwrite=False, call=[job(a), job(b)])


def test_distinct_seeds_of_same_named_scenes_do_not_clash(tmp_path):
    a, b = scene_file(tmp_path / "a"), scene_file(tmp_path / "b")
    planned = plan_render([job(a, (1,)), job(b, (2,))], tmp_path / "out", overwrite=False)
    assert [p.png.name for p in planned] == ["x-1.png", "x-2.png"]
    assert (tmp_path / "out").is_dir()  # created up front


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
    a = scene_file(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x-5.json").write_text("{}")
    with pytest.raises(OutputError, match="refusing to overwrite existing outputs: x-5.json"):
        plan_render([job(a)], tmp_path / "out", overwrite=False)
    assert len(plan_render([job(a)], tmp_path / "out", overwrite=True)) == 1


@pytest.mark.parametrize("where", ["file", "/proc/x"])
def test_an_output_folder_that_cannot_be_written_is_refused(tmp_path, where):
    a = scene_file(tmp_path)
    out = a if where == "file" else Path(where)
    with pytest.raises(OutputError) as excinfo:
        plan_render([job(a)], out, overwrite=True)
    assert str(out) in problems(excinfo)
    assert ("is a file, not a folder" if where == "file" else "cannot create this folder") in problems(excinfo)


@pytest.mark.parametrize(
    ("name", "words"),
    [(".", "is a folder"), ("layout", "has no extension; expected .png"), ("layout.jpg", "unknown extension '.jpg'")],
)
def test_output_file_names_are_checked(tmp_path, name, words):
    with pytest.raises(OutputError, match=words):
        check_output_name(tmp_path / name, (".png",))
    check_output_name(tmp_path / "layout.PNG", (".png",))


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_write_leaves_only_the_target(tmp_path):
    with atomic_path(tmp_path / "a.png") as temporary:
        assert outputs.TEMPORARY.fullmatch(temporary.name) and f"semanticdraw-{os.getpid()}-" in temporary.name
        temporary.write_bytes(b"data")
    assert os.listdir(tmp_path) == ["a.png"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.png") as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == ["a.png"] and (tmp_path / "a.png").read_bytes() == b"data"


def test_a_killed_write_leaves_a_recognisable_temporary_the_next_write_removes(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from semanticdraw_cli.outputs import atomic_path
        with atomic_path(Path({str(tmp_path)!r}) / "a.png") as temporary:
            temporary.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert killed.returncode == -9
    (left,) = temporaries(tmp_path)
    assert left.startswith(".a.png.semanticdraw-") and outputs.TEMPORARY.fullmatch(left)
    with atomic_path(tmp_path / "b.png") as temporary:
        temporary.write_bytes(b"whole")
    assert sorted(os.listdir(tmp_path)) == ["b.png"]


def test_only_stale_temporaries_of_ours_are_removed(tmp_path):
    alive = tmp_path / f".a.png.semanticdraw-{os.getpid()}-abc123.tmp"  # a write in progress
    old = tmp_path / f".b.png.semanticdraw-{os.getpid()}-def456.tmp"
    foreign = tmp_path / ".c.png.xyz.tmp"  # not ours
    for path in (alive, old, foreign):
        path.write_bytes(b"")
    os.utime(old, (0, 0))
    assert remove_stale_temporaries(tmp_path) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, foreign.name])


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.png"
    with pytest.raises(KeyboardInterrupt):
        with outputs.atomic_path(target) as temporary:
            temporary.write_bytes(b"half a picture")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


MASKED = "canvas: {width: 64, height: 48}\nsampler: {seed: 5}\nregions:\n  - {name: fox, prompt: a fox, mask: x-5.png}\n"


def masked_scene(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("L", (64, 48), 255).save(folder / "x-5.png")
    (folder / "x.yaml").write_text(MASKED)
    return folder / "x.yaml"


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_that_is_a_file_the_scene_reads_is_refused_with_or_without_overwrite(tmp_path, overwrite):
    path = masked_scene(tmp_path)
    with pytest.raises(OutputError) as excinfo:
        plan_render([job(path)], tmp_path, overwrite=overwrite)
    assert f"{tmp_path / 'x-5.png'}: the output would overwrite the mask of region 'fox' in {path}" in problems(excinfo)


def test_a_hard_link_or_a_linked_folder_to_an_input_is_refused_naming_the_input(tmp_path):
    path = masked_scene(tmp_path / "scene")
    (tmp_path / "out").mkdir()
    os.link(tmp_path / "scene" / "x-5.png", tmp_path / "out" / "x-5.png")  # the same inode under another name
    with pytest.raises(OutputError) as excinfo:
        plan_render([job(path)], tmp_path / "out", overwrite=True)
    assert f"the mask of region 'fox' in {path} ({tmp_path / 'scene' / 'x-5.png'})" in problems(excinfo)
    (tmp_path / "linked").symlink_to(tmp_path / "scene")
    with pytest.raises(OutputError, match="would overwrite the mask of region 'fox'"):
        plan_render([job(path)], tmp_path / "linked", overwrite=True)


def test_an_output_inside_a_local_model_folder_is_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    path = scene_file(tmp_path / "scene")
    path.write_text(SCENE + "model: {checkpoint: ../model}\n")
    with pytest.raises(OutputError) as excinfo:
        plan_render([job(path)], model, overwrite=True)
    assert f"would write inside the model file (model.checkpoint) of {path} ({model})" in problems(excinfo)
    assert not list(model.iterdir())
