"""Which outputs of a call are fresh: their PNG and report exist and hold the content key of the inputs of now.

`render --changed` renders only the stale images and `check` lists them with what changed. An output is
trusted only when its report reads as JSON holding `content_key`, and the PNG beside it embeds the same key,
and that key is the one the current inputs give; a missing, corrupt or foreign file makes it stale. Nothing
here loads a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from semanticdraw_cli import content_key
from semanticdraw_cli.devices import planned_target
from semanticdraw_cli.file_hashes import HashCache
from semanticdraw_cli.jobs import JobPlan
from semanticdraw_cli.outputs import PARAMS_KEY, PlannedImage
from semanticdraw_cli.scene.safe_io import InputRefused, Kind, read_bytes

REPORT = Kind("a report", "MAX_REPORT_BYTES")
STALE_EXIT_CODE = 4  # `check`: an output is missing or was made from other inputs


@dataclass(frozen=True)
class Verdict:
    """One planned image: whether its files on disk hold the key of its inputs now, and if not, why."""

    image: PlannedImage
    key: str  # the content key of its inputs now
    reasons: tuple[str, ...]  # empty when fresh

    @property
    def fresh(self) -> bool:
        return not self.reasons


def judge(plan: JobPlan, device: str | None, dtype: str | None, hashes: HashCache | None = None) -> list[Verdict]:
    """A verdict per planned image of the plan, in plan order; `device`/`dtype` as given to `render`."""
    from semanticdraw_cli.families.registry import family

    hashes = hashes or HashCache()
    shared: dict[str, dict] = {}
    inputs: dict[tuple[str, int], dict] = {}
    for job in plan.jobs:
        if job.label not in shared:
            shared[job.label] = content_key.scene_inputs(job.scene, hashes)
        target = planned_target(device, dtype, family(job.scene.model.family).cuda_dtype)
        for seed in job.seeds:
            inputs[(job.label, seed)] = content_key.image_inputs(shared[job.label], seed, *target)
    hashes.save()
    return [verdict(image, inputs[(image.label, image.seed)]) for image in plan.outputs]


def verdict(image: PlannedImage, inputs: dict) -> Verdict:
    key = content_key.content_key(inputs)
    stored, problem = stored_inputs(image)
    if problem is not None:
        return Verdict(image, key, (problem,))
    if stored["content_key"] == key:
        return Verdict(image, key, ())
    return Verdict(image, key, tuple(content_key.differences(stored.get("content_inputs"), inputs)))


def stored_inputs(image: PlannedImage) -> tuple[dict | None, str | None]:
    """(the report's content, None) when the report and the PNG agree on a key; else (None, why not)."""
    from semanticdraw_cli.scene.embedded import read_text_chunks

    for path in (image.png, image.report):
        if not path.exists():
            return None, f"{path.name} is missing"
    try:
        report = json.loads(read_bytes(image.report, REPORT))
    except (InputRefused, ValueError, RecursionError) as error:
        return None, f"{image.report.name} is not a readable report ({_short(error)})"
    if not isinstance(report, dict) or not isinstance(report.get("content_key"), str):
        return None, f"{image.report.name} holds no content key (not written by this version of semanticdraw render)"
    try:
        params = json.loads(read_text_chunks(image.png, (PARAMS_KEY,)).get(PARAMS_KEY, "{}"))
    except (InputRefused, ValueError, RecursionError) as error:
        return None, f"{image.png.name} is not a readable PNG of semanticdraw render ({_short(error)})"
    if not isinstance(params, dict) or params.get("content_key") != report["content_key"]:
        return None, f"{image.png.name} does not hold the content key of {image.report.name} (replaced since?)"
    return report, None


def stale_plan(plan: JobPlan, verdicts: Sequence[Verdict]) -> tuple[JobPlan, list[Verdict]]:
    """(the plan with only the batches that hold a stale image, the fresh images of the other batches). A batch is
    rendered whole, so that every image is the one a render from scratch gives, bit for bit: an image's pixels
    may differ in float rounding with the batch it is rendered in."""
    stale = {(v.image.label, v.image.seed) for v in verdicts if not v.fresh}
    jobs = tuple(job for job in plan.jobs if any((job.label, seed) in stale for seed in job.seeds))
    kept = {(job.label, seed) for job in jobs for seed in job.seeds}
    outputs = tuple(image for image in plan.outputs if (image.label, image.seed) in kept)
    skipped = [v for v in verdicts if (v.image.label, v.image.seed) not in kept]
    return JobPlan(jobs, plan.total, outputs), skipped


def skipped_entry(found: Verdict) -> dict:
    """A fresh image in the `--json` list of `render --changed`."""
    image = found.image
    return {"scene": image.label, "seed": image.seed, "png": str(image.png), "report": str(image.report),
            "skipped": "unchanged", "content_key": found.key}


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 100 else text[:97] + "..."
