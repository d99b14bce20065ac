"""`render` under a launcher, two CPU processes (gloo on 127.0.0.1): the same pixels as one process,
one failure for the whole launch, `--shard` then the split. Small canvases and two steps keep it short."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--set", "canvas.width=64", "--set", "canvas.height=64", "--set", "sampler.steps=2", "--device", "cpu"]
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
HANG_LIMIT = 900  # seconds: a hung launch fails the test rather than blocking CI (not a timing assertion)

pytestmark = pytest.mark.slow


def environment(**extra: str) -> dict[str, str]:
    """This worktree's package first on the path, one thread per process (batch-invariant float sums), offline."""
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES and not k.startswith("ACCELERATE_")}
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**base, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=HANG_LIMIT)


def start(per_rank: list[list[str]], cwd: Path) -> list[subprocess.Popen]:
    """One `semanticdraw render` per rank with the variables torchrun sets, running."""
    port, size = str(free_port()), str(len(per_rank))
    return [
        subprocess.Popen([sys.executable, "-m", "semanticdraw_cli", "render", *args], cwd=cwd, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=environment(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=size, LOCAL_WORLD_SIZE=size,
                                         MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
        for rank, args in enumerate(per_rank)
    ]


def spawn(per_rank: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    """Start one `semanticdraw render` per rank; each one's exit code and output once all have ended."""
    processes = start(per_rank, cwd)
    done = []
    for process in processes:
        out, err = process.communicate(timeout=HANG_LIMIT)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


def scene_file(folder: Path, name: str, model: str, **sampler: int) -> Path:
    text = (ROOT / "scenes" / "two-subjects.yaml").read_text()
    fields = "".join(f"\n  {key}: {value}" for key, value in sampler.items())
    text = text.replace("sampler:", f"model: {{checkpoint: {model}}}\nsampler:{fields}", 1)
    (folder / name).write_text(text.replace("  seed: 7\n", "") if "seed" in sampler else text)
    return folder / name


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """a.yaml: 3 images (seeds 7-9) in batches of 2, b.yaml: 1 image (seed 5), both on the tiny preset."""
    folder = tmp_path_factory.mktemp("launch")
    scene_file(folder, "a.yaml", "tiny", images=3, max_batch=2)
    scene_file(folder, "b.yaml", "tiny", images=1, seed=5)
    return folder


@pytest.fixture(scope="module")
def reference(work) -> dict[str, np.ndarray]:
    """Every image of the call, and of its --shard 2/2, rendered by one process."""
    for shard, folder in ((), "one"), (("--shard", "2/2"), "one-shard"):
        args = ["render", "a.yaml", "b.yaml", *SMALL, *shard, "-o", folder, "-q"]
        result = run([sys.executable, "-m", "semanticdraw_cli", *args], work)
        assert result.returncode == 0, result.stderr
    return pixels(work / "one") | {f"shard/{name}": image for name, image in pixels(work / "one-shard").items()}


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {path.name: np.asarray(Image.open(path)) for path in sorted(folder.glob("*.png"))}


def leftovers(folder: Path) -> list[str]:
    """Temporaries, or a picture without its report (or the other way round)."""
    names = {path.name for path in folder.iterdir()} if folder.exists() else set()
    halves = {name for name in names if name.endswith((".png", ".json"))
              and name.rsplit(".", 1)[0] + (".json" if name.endswith(".png") else ".png") not in names}
    return sorted(halves | {name for name in names if name.endswith(".tmp")})


def test_accelerate_launch_with_two_processes_renders_what_one_process_renders(work, reference):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", str(free_port())]
    result = run([*launcher, "-m", "semanticdraw_cli", "render", "a.yaml", "b.yaml", *SMALL, "-o", "two", "--json"],
                 work)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # the main process's summary of both processes' images, in call order
    assert [(Path(e["png"]).name, e["process"]) for e in summary] == [  # batches a 7-8, a 9 | b 5
        ("a-7.png", 0), ("a-8.png", 0), ("a-9.png", 0), ("b-5.png", 1)]
    launched = pixels(work / "two")
    assert sorted(launched) == ["a-7.png", "a-8.png", "a-9.png", "b-5.png"]
    for name, image in launched.items():
        assert np.array_equal(image, reference[name]), name
    assert "process 1: b.yaml (seed 5) written" in result.stderr and leftovers(work / "two") == []


def test_torchrun_with_a_shard_takes_the_share_then_splits_it(work, reference):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["render", "a.yaml", "b.yaml", *SMALL, "--shard", "2/2", "-o", "shard", "--json", "-q"]
    result = run([*launcher, "-m", "semanticdraw_cli", *args], work)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # images 2 and 4 of the call (a-8, b-5): one batch for each process
    assert [(Path(e["png"]).name, e["process"]) for e in summary] == [("a-8.png", 0), ("b-5.png", 1)]
    launched = pixels(work / "shard")
    assert sorted(launched) == ["a-8.png", "b-5.png"]
    for name, image in launched.items():  # the same pixels as one process rendering the same share
        assert np.array_equal(image, reference[f"shard/{name}"]), name


def test_changed_under_a_launcher_renders_only_the_batch_of_the_stale_image(work, reference):
    import shutil

    shutil.copytree(work / "one", work / "changed")
    (work / "changed" / "a-8.png").unlink()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    args = ["render", "a.yaml", "b.yaml", *SMALL, "--changed", "-o", "changed", "--json", "-q"]
    result = run([*launcher, "-m", "semanticdraw_cli", *args], work)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [(Path(e["png"]).name, e.get("skipped")) for e in summary] == [  # a-8's batch (a 7-8) is rendered whole
        ("a-9.png", "unchanged"), ("b-5.png", "unchanged"), ("a-7.png", None), ("a-8.png", None)]
    for name, image in pixels(work / "changed").items():  # bit-equal to the render from scratch
        assert np.array_equal(image, reference[name]), name


def test_a_failing_job_ends_every_process_with_its_code_naming_process_and_job(work):
    scene_file(work, "bad.yaml", "nobody/no-such-model-xyz")  # a hub id: fails when loading, offline
    args = ["a.yaml", "bad.yaml", "--images", "2", *SMALL, "-o", "failed", "--json"]
    main, other = spawn([args, args], work)  # process 0 renders a.yaml (7-8), process 1 bad.yaml (7-8)
    assert (main.returncode, other.returncode) == (1, 1), main.stderr + other.stderr
    assert "process 1 of 2 failed on bad.yaml (seeds 7-8): error: cannot load model" in main.stderr
    assert "failed on" not in other.stderr and other.stdout == ""  # the main process reports the launch
    report = json.loads(main.stdout)
    assert report["exit_code"] == 1 and "process 1 of 2" in report["error"]
    # process 0 stops at its next step or finishes first; either way only whole images are left, all listed
    written = sorted(Path(entry["png"]).name for entry in report["images"])
    assert written == sorted(pixels(work / "failed")) and set(written) <= {"a-7.png", "a-8.png"}
    assert leftovers(work / "failed") == []


@pytest.mark.parametrize("case", ["existing", "one-process", "device"])
def test_problems_found_while_planning_stop_every_process_before_a_model_loads(tmp_path, case):
    scene = scene_file(tmp_path, "a.yaml", "does/not-exist")  # a model load would exit 1: 2 proves it never ran
    args = [str(scene), "--device", "cpu", "-o", str(tmp_path / "out")]
    per_rank = [args, args]
    if case == "existing":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "a-7.png").write_bytes(b"precious")
    elif case == "one-process":
        per_rank = [args, [*args[:1], str(tmp_path / "missing.yaml"), *args[1:]]]
    else:
        per_rank = [[*args, "--device", "cuda:1"]] * 2
    main, other = spawn(per_rank, tmp_path)
    assert (main.returncode, other.returncode) == (2, 2), main.stderr + other.stderr
    expected = {"existing": "refusing to overwrite existing outputs: a-7.png",
                "one-process": "process 1 of 2: ", "device": "--device: 'cuda:1': under a launcher"}[case]
    assert expected in main.stderr and other.stderr.count(expected) == 0
    if case == "one-process":
        assert "missing.yaml" in main.stderr
    if case == "existing":
        assert (tmp_path / "out" / "a-7.png").read_bytes() == b"precious"


def test_a_killed_process_is_reported_with_exactly_the_images_on_disk_and_the_jobs_left(work):
    scene_file(work, "four.yaml", "tiny", images=4, max_batch=1)  # batches 7 | 8 for process 0, 9 | 10 for process 1
    args = ["four.yaml", *SMALL, "-o", "killed", "--json"]
    main, other = start([args, args], work)
    try:
        for line in other.stderr:  # printed once the batch's files are written and noted in the store
            if "process 1: four.yaml (seed 9) written" in line:
                break
        other.kill()  # dies outright during its second batch: it reports nothing
        out, err = main.communicate(timeout=HANG_LIMIT)
    finally:
        for process in (main, other):
            if process.poll() is None:
                process.kill()
    assert main.returncode == 1, err
    report = json.loads(out)  # one document
    assert report["error"].startswith("process 1 of 2 failed on four.yaml (seed 10): ended before reporting")
    assert report["exit_code"] == 1 and report["error"] in err
    listed = sorted(Path(entry["png"]).name for entry in report["images"])
    assert listed == ["four-7.png", "four-8.png", "four-9.png"] == sorted(pixels(work / "killed"))
    assert report["unfinished"] == [{"scene": "four.yaml", "seeds": [10], "process": 1}]
    assert leftovers(work / "killed") == []


def test_fewer_batches_than_processes_are_split_and_each_image_is_its_embedded_scenes(work):
    """a.yaml --images 2 is one batch (max_batch 2): each process renders one image in a batch of 1, the
    batch its PNG embeds, so one process rendering with max_batch 1 gives the same pixels."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = run([*launcher, "-m", "semanticdraw_cli", "render", "a.yaml", "--images", "2", *SMALL, "-o", "split",
                  "--json"], work)
    assert result.returncode == 0, result.stderr
    assert [(Path(e["png"]).name, e["process"]) for e in json.loads(result.stdout)] == [("a-7.png", 0), ("a-8.png", 1)]
    assert "2 processes share 2 images in 2 batches; the bars show process 0's 1" in result.stderr
    alone = run([sys.executable, "-m", "semanticdraw_cli", "render", "a.yaml", "--images", "2", *SMALL,
                 "--set", "sampler.max_batch=1", "-o", "split-one", "-q"], work)
    assert alone.returncode == 0, alone.stderr
    launched, reference = pixels(work / "split"), pixels(work / "split-one")
    assert sorted(launched) == sorted(reference) == ["a-7.png", "a-8.png"]
    for name, image in launched.items():
        assert np.array_equal(image, reference[name]), name
        assert "max_batch: 1" in Image.open(work / "split" / name).text["semanticdraw:scene"]


@pytest.mark.parametrize("end", ["launcher killed", "ctrl-c"])
def test_a_launch_whose_launcher_ends_reports_exactly_the_images_on_disk(work, end):
    """Killing torchrun, or Ctrl-C (SIGINT to the whole foreground group), once an image is written: the
    workers may finish their share or stop, but the main one prints one document, and every seed of the
    call is either listed as written, with its files on disk, or listed as unfinished."""
    import signal

    scene_file(work, "ends.yaml", "tiny", images=4, max_batch=1)  # batches 7 | 8 for process 0, 9 | 10 for process 1
    folder = f"ends-{end.split()[0]}"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*launcher, "-m", "semanticdraw_cli", "render", "ends.yaml", *SMALL, "-o", folder, "--json"]
    process = subprocess.Popen(command, cwd=work, env=environment(), text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        for line in process.stderr:  # the workers write through the launcher's stderr
            if "ends.yaml (seed 7) written" in line:
                break
        if end == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.kill()
        out, _ = process.communicate(timeout=HANG_LIMIT)  # to the end: the launcher and its workers closed both
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    document = json.loads(out)  # exactly one document
    if isinstance(document, dict):  # stopped: a failure, with what was written and what was left
        assert document["exit_code"] in (1, 130), document
        written, left = document["images"], [seed for job in document["unfinished"] for seed in job["seeds"]]
    else:  # every process had finished its share
        written, left = document, []
    listed = sorted(Path(entry["png"]).name for entry in written)
    assert listed == sorted(pixels(work / folder)) and "ends-7.png" in listed
    assert sorted([int(name[5:-4]) for name in listed] + left) == [7, 8, 9, 10]
    assert leftovers(work / folder) == []
