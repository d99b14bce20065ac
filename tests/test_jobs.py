"""Planning a render call: scenes × seeds, shards, and the outputs every share writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from semanticdraw_cli.errors import SceneError
from semanticdraw_cli.jobs import parse_shard, plan_call, select, shares
from semanticdraw_cli.outputs import OutputError
from semanticdraw_cli.scene.loader import load_scene

SCENES = Path(__file__).resolve().parent.parent / "scenes"


@pytest.fixture(scope="module")
def scenes():
    return [
        ("two-subjects.yaml", load_scene(SCENES / "two-subjects.yaml", ["sampler.images=3"])),
        ("irworobongdo.yaml", load_scene(SCENES / "irworobongdo.yaml", ["sampler.images=4"])),
    ]


def test_shards_are_disjoint_and_complete(scenes):
    everything = {(job.scene.name, seed) for job in select(scenes) for seed in job.seeds}
    assert len(everything) == 7
    for count in (1, 2, 3, 5):
        parts = [{(job.scene.name, seed) for job in select(scenes, (k, count)) for seed in job.seeds}
                 for k in range(1, count + 1)]
        assert set().union(*parts) == everything
        assert sum(len(p) for p in parts) == len(everything)


def test_a_scenes_seeds_stay_together_in_order(scenes):
    jobs = select(scenes, (1, 2))  # every other (scene, seed) job
    assert [(job.label, job.seeds) for job in jobs] == [("two-subjects.yaml", (7, 9)), ("irworobongdo.yaml", (2025, 2027))]


@pytest.mark.parametrize("text", ["0/2", "3/2", "x", "1/0", "1/2/3"])
def test_bad_shards_are_refused_naming_the_option(text):
    with pytest.raises(SceneError, match="--shard"):
        parse_shard(text)
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None


def test_plan_checks_clashes_over_the_whole_call_and_outputs_of_the_share(scenes, tmp_path):
    plan = plan_call(scenes, tmp_path / "out", overwrite=False, shard=(2, 3))
    assert plan.total == 7 and sum(len(job.seeds) for job in plan.jobs) == len(plan.outputs) == 2
    assert {p.png.name for p in plan.outputs} == {"two-subjects-8.png", "irworobongdo-2025.png"}
    twice = [scenes[0], ("again.yaml", scenes[0][1])]  # the same scene name twice: another share would clash
    with pytest.raises(OutputError, match="two-subjects"):
        plan_call(twice, tmp_path / "out", overwrite=False, shard=(1, 7))



def test_a_scenes_seeds_are_batched_by_max_batch_within_the_share(scenes):
    small = [(label, dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, max_batch=2)))
             for label, scene in scenes]
    assert [(job.label, job.seeds) for job in select(small)] == [
        ("two-subjects.yaml", (7, 8)), ("two-subjects.yaml", (9,)),
        ("irworobongdo.yaml", (2024, 2025)), ("irworobongdo.yaml", (2026, 2027))]
    assert [(job.label, job.seeds) for job in select(small, (1, 2))] == [  # the share first, then its batches
        ("two-subjects.yaml", (7, 9)), ("irworobongdo.yaml", (2025, 2027))]


def test_a_share_is_refused_when_any_share_of_the_call_would_write_over_an_input(tmp_path):
    from PIL import Image

    Image.new("L", (64, 48), 255).save(tmp_path / "x-6.png")  # the second image's output name
    (tmp_path / "x.yaml").write_text("canvas: {width: 64, height: 48}\nsampler: {seed: 5, images: 2}\n"
                                     "regions:\n  - {name: fox, prompt: a fox, mask: x-6.png}\n")
    scenes = [("x.yaml", load_scene(tmp_path / "x.yaml"))]
    with pytest.raises(OutputError, match="x-6.png: the output would overwrite the mask of region 'fox' in x.yaml"):
        plan_call(scenes, tmp_path, overwrite=True, shard=(1, 2))  # this share writes only x-5: every share agrees


def test_shares_are_contiguous_runs_and_the_first_processes_take_one_more(scenes):
    batches = select(scenes)  # two-subjects 7-9, irworobongdo 2024-2027: two batches
    assert shares(batches, 1) == [batches]
    assert shares(batches, 2) == [[batches[0]], [batches[1]]]
    assert shares(batches, 3) == [[batches[0]], [batches[1]], []]
    five = [dataclasses.replace(batches[0], seeds=(seed,)) for seed in range(5)]
    assert [[job.seeds[0] for job in run] for run in shares(five, 3)] == [[0, 1], [2, 3], [4]]


def test_fewer_batches_than_processes_are_made_smaller_so_that_every_process_renders(tmp_path):
    label, scene = "two-subjects.yaml", load_scene(SCENES / "two-subjects.yaml", ["sampler.images=8"])
    assert [job.seeds for job in plan_call([(label, scene)], tmp_path, overwrite=False).jobs] == [tuple(range(7, 15))]
    two = plan_call([(label, scene)], tmp_path, overwrite=False, processes=2)
    assert [job.seeds for job in two.jobs] == [(7, 8, 9, 10), (11, 12, 13, 14)]
    assert {job.scene.sampler.max_batch for job in two.jobs} == {4}  # embedded in the PNGs: ...
    assert [job.seeds for job in select([(label, two.jobs[0].scene)])] == [job.seeds for job in two.jobs]  # ... one
    # process rendering the embedded scene renders the same batches
    three = plan_call([(label, scene)], tmp_path, overwrite=False, processes=3)
    assert [job.seeds for job in three.jobs] == [(7, 8, 9), (10, 11, 12), (13, 14)]
    many = plan_call([(label, scene)], tmp_path, overwrite=False, processes=12)  # one image each, 4 processes idle
    assert [job.seeds for job in many.jobs] == [(seed,) for seed in range(7, 15)] and len(many.outputs) == 8
