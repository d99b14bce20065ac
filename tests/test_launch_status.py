"""What a launch reports, without processes: the one failure for every process, the images and jobs left."""

from __future__ import annotations

import pytest

from semanticdraw_cli.jobs import Job
from semanticdraw_cli.launch_status import LaunchFailure, Status, describe, raise_failure


def test_jobs_are_named_by_scene_and_seeds():
    scene = object()
    assert describe(Job("a.yaml", scene, (7,))) == "a.yaml (seed 7)"
    assert describe(Job("a.yaml", scene, (7, 8, 9))) == "a.yaml (seeds 7-9)"
    assert describe(Job("a.yaml", scene, (7, 9))) == "a.yaml (seeds 7, 9)"


def test_the_same_planning_problem_everywhere_reads_as_one():
    statuses = [Status(0, 2, "x.yaml: canvas.width: 65"), Status(1, 2, "x.yaml: canvas.width: 65")]
    with pytest.raises(LaunchFailure) as failure:
        raise_failure(statuses, planning=True, main=True)
    assert (failure.value.message, failure.value.code, failure.value.main) == ("x.yaml: canvas.width: 65", 2, True)


def test_a_problem_on_one_process_names_it_and_every_process_gets_its_code():
    statuses = [Status(0, digest="d"), Status(1, 2, "missing.yaml: no such file")]
    for main in (True, False):
        with pytest.raises(LaunchFailure) as failure:
            raise_failure(statuses, planning=True, main=main)
        assert failure.value.code == 2 and failure.value.main == main
        assert failure.value.message == "process 1 of 2: missing.yaml: no such file"


def test_processes_that_plan_different_calls_are_refused():
    with pytest.raises(LaunchFailure, match="different calls") as failure:
        raise_failure([Status(0, digest="a"), Status(1, digest="b")], planning=True, main=True)
    assert failure.value.code == 2
    raise_failure([Status(0, digest="a"), Status(1, digest="a")], planning=True, main=True)


def test_a_render_failure_names_the_process_and_the_job_and_stopped_processes_are_not_blamed():
    statuses = [Status(0, stopped=True), Status(1, 1, "error: out of GPU memory", "a.yaml (seeds 9-10)"),
                Status(2, 130, "interrupted", "b.yaml (seed 5)")]
    with pytest.raises(LaunchFailure) as failure:
        raise_failure(statuses, planning=False, main=True)
    assert failure.value.code == 1
    assert failure.value.message == ("process 1 of 3 failed on a.yaml (seeds 9-10): error: out of GPU memory\n"
                                     "(process 2 failed too)")


def test_processes_that_stopped_without_a_failure_fail_the_launch_listing_what_is_left():
    """The launcher ended (its store is gone): every process stops between steps, none failed; not a success."""
    statuses = [Status(0, message="it lost the launcher's store (the launcher ended?)", stopped=True,
                       entries=({"seed": 7},), unfinished=({"scene": "a.yaml", "seeds": [8], "process": 0},)),
                Status(1, message="it lost the launcher's store (the launcher ended?)", stopped=True,
                       unfinished=({"scene": "a.yaml", "seeds": [9, 10], "process": 1},))]
    with pytest.raises(LaunchFailure) as failure:
        raise_failure(statuses, planning=False, main=True)
    assert failure.value.code == 1
    assert failure.value.message == ("process 0 of 2 stopped: it lost the launcher's store (the launcher ended?); "
                                     "2 jobs did not finish")
    assert failure.value.images == [{"seed": 7}]
    assert [job["seeds"] for job in failure.value.unfinished] == [[8], [9, 10]]


def test_a_failure_lists_every_processs_images_and_jobs_left():
    statuses = [Status(0, stopped=True, entries=({"seed": 7, "process": 0},)),
                Status(1, 130, "interrupted", "a.yaml (seed 9)", entries=({"seed": 8, "process": 1},),
                       unfinished=({"scene": "a.yaml", "seeds": [9], "process": 1},))]
    with pytest.raises(LaunchFailure) as failure:
        raise_failure(statuses, planning=False, main=True)
    assert failure.value.code == 130 and failure.value.message == "process 1 of 2 failed on a.yaml (seed 9): interrupted"
    assert failure.value.images == [{"seed": 7, "process": 0}, {"seed": 8, "process": 1}]
    assert failure.value.unfinished == [{"scene": "a.yaml", "seeds": [9], "process": 1}]
