"""What a step preview costs to decode: the tiny autoencoder (`model.preview_decoder: tiny-ae`) against the full VAE.

    python benchmarks/preview_decoder.py                                        # sd15 `small`, CPU, 1280x768
    python benchmarks/preview_decoder.py --device cuda --preset full-random --sizes 1280x768 4096x4096

One process, one model: the adapter of the preset (the tiny autoencoder is the preset's random-weight one:
`tiny` and `small` at reduced width, `full-random` AutoencoderTiny's default, TAESD's own architecture), one
seeded random latent per size, one small warm-up decode of each (which also loads the tiny one), then
`--repeats` interleaved rounds per size and the median. Each time is `decode` / `decode_preview` as the renderer and `watch` call
them: latents in, uint8 pictures on the host out (so a GPU's copy back is inside). Writes
benchmarks/results/preview-decoder-<family>-<preset>-<device>-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from semanticdraw_cli.render import Renderer  # noqa: E402
from semanticdraw_cli.report import cpu_name  # noqa: E402
from semanticdraw_cli.scene.loader import load_scene  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "scenes" / "irworobongdo.yaml"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="sd15")
    parser.add_argument("--preset", default="small", help="tiny, small (sd15) or full-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, the family's on CUDA")
    parser.add_argument("--sizes", nargs="+", default=["1280x768"], help="canvas sizes WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def latent_of(adapter, width: int, height: int) -> torch.Tensor:
    """A seeded random (1, C, h, w) latent of a width x height canvas, on the adapter's device."""
    shape = (1, adapter.latent_channels, height // adapter.latent_factor, width // adapter.latent_factor)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(adapter.device)


def timed(decode) -> float:
    start = time.perf_counter()
    decode()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    scene = load_scene(SCENE, [f"model.family={args.family}", f"model.checkpoint={args.preset}",
                               "model.accelerator=none", "model.preview_decoder=tiny-ae"])
    adapter, load_seconds = Renderer(device=args.device, dtype=args.dtype).adapter(scene)
    factor = adapter.latent_factor
    rows, warm_up = {}, latent_of(adapter, 8 * factor, 8 * factor)
    first = {"full VAE": timed(lambda: adapter.decode(warm_up)),  # the tiny autoencoder loads here
             "tiny autoencoder": timed(lambda: adapter.decode_preview(warm_up, scene.model))}
    for size in args.sizes:
        width, height = (int(side) for side in size.lower().split("x"))
        latent = latent_of(adapter, width, height)
        decoders = {"full VAE": lambda: adapter.decode(latent),
                    "tiny autoencoder": lambda: adapter.decode_preview(latent, scene.model)}
        runs = {name: [] for name in decoders}
        for _ in range(args.repeats):
            for name, decode in decoders.items():
                runs[name].append(timed(decode))
        full, tiny = (statistics.median(runs[name]) for name in decoders)
        rows[f"{width}x{height}"] = {"full_vae_seconds": full, "tiny_autoencoder_seconds": tiny,
                                     "tiny_over_full": tiny / full, "speedup": full / tiny,
                                     "repeat_seconds": runs}
        print(f"{width}x{height}: full VAE {full:.3f} s, tiny autoencoder {tiny:.3f} s ({full / tiny:.1f}x faster)")
    result = {
        "what": f"decode of one {args.family} `{args.preset}` latent: full VAE vs tiny autoencoder (AutoencoderTiny), "
                f"median of {args.repeats} interleaved repeats after a warm-up",
        "machine": machine(adapter.device),
        "dtype": str(adapter.dtype).removeprefix("torch."),
        "model_load_seconds": load_seconds,
        "warm_up_seconds": first,  # one 8x8-latent decode each; the tiny autoencoder's includes loading it
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "rows": rows,
    }
    out = args.out or ROOT / "benchmarks" / "results" / (
        f"preview-decoder-{args.family}-{args.preset}-{adapter.device.type}-{result['machine']['slug']}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(out)
    return 0


def machine(device: torch.device) -> dict:
    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    label = gpu or f"{cpu}-{os.cpu_count()}c"
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "slug": re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)|cpu|@.*", "", label.lower())).strip("-")}


if __name__ == "__main__":
    raise SystemExit(main())
