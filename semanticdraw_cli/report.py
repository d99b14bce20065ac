"""The timing report of a render: seconds per phase, work done, device, peak memory and versions."""

from __future__ import annotations

import platform
import resource
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semanticdraw_cli import __version__

if TYPE_CHECKING:
    import torch

    from semanticdraw_cli.families.base import FamilyAdapter
    from semanticdraw_cli.scene.types import Scene

VERSIONED = ("torch", "diffusers", "transformers")  # the libraries that decide the pixels


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata without importing the packages."""
    return {"semanticdraw": __version__, **{name: installed_version(name) for name in VERSIONED},
            "python": platform.python_version()}


@cache
def cpu_name() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what `platform` knows of it."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def installed_version(name: str) -> str:
    """A package's version from its metadata, read once per process (parsing it takes milliseconds, and
    `render --changed` asks for every scene)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def network_calls(report: dict) -> int:
    """The network calls of a report, also of one written before `unet_calls` was renamed `network_calls`."""
    return report["network_calls"] if "network_calls" in report else report["unet_calls"]


def build_report(
    scene: Scene, timings: dict, steps: list[dict], adapter: FamilyAdapter, seeds: list[int], speed: dict | None = None
) -> dict[str, Any]:
    """`speed`: the network's levers and the denoise phase's FLOPs (render.py, speed.py)."""
    return {
        "scene": str(scene.source) if scene.source else scene.name,
        "canvas": [scene.canvas.width, scene.canvas.height],
        "method": scene.sampler.method,
        "plan": scene.sampler.plan,
        "images_in_batch": len(seeds),
        "prompts": _prompts(scene),  # as rendered: `{a|b}` variants resolved (variants.py)
        "seconds": {
            "load": timings["load"],
            "encode": timings["encode"],
            "masks": timings["masks"],
            "denoise": timings["denoise"],
            "steps": [step["seconds"] for step in steps],
            "decode": timings["decode"],
            "compile": timings.get("compile", 0.0),  # compiling the network, before the steps are timed
            "flops": timings.get("flops", 0.0),  # counting FLOPs and measuring the peak: once per process
        },
        "network_calls": sum(step["network_calls"] for step in steps),
        "batch_items": sum(step["batch_items"] for step in steps),
        "latent_pixels": sum(step["latent_pixels"] for step in steps),
        "pairs_active": sum(step["pairs_active"] for step in steps),
        "pairs_total": sum(step["pairs_total"] for step in steps),
        "oom_halvings": sum(step.get("oom_halvings", 0) for step in steps),  # calls retried with half the batch
        "padded_items": sum(step.get("padded_items", 0) for step in steps),
        **(speed or {}),
        "steps": steps,
        "device": str(adapter.device),
        "dtype": str(adapter.dtype).removeprefix("torch."),
        "peak_memory_bytes": peak_memory_bytes(adapter.device),
        "versions": versions(),
    }


def _prompts(scene: Scene) -> dict[str, str]:
    """Each region's prompt by name, and the background prompt when there is one."""
    prompts = {region.name: region.prompt for region in scene.regions}
    return prompts | ({"(background)": scene.background.prompt} if scene.background.prompt is not None else {})
