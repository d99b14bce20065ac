"""Fingerprints of every example scene rendered on its family's `tiny` preset, for refactors.

A refactor keeps behaviour: run this before and after, and compare the two JSON files; every image
and every final latent must be bit-equal. Also renders a few variants that exercise the code paths
the example scenes do not (reference plan, several images, a background picture, continuous masks).

    python benchmarks/image_hashes.py --out before.json
    ... refactor ...
    python benchmarks/image_hashes.py --out after.json --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {  # name: (scene file, overrides)
    "irworobongdo": ("irworobongdo.yaml", ["sampler.tile={size: 384, stride: 192}"]),
    "irworobongdo-reference": ("irworobongdo.yaml", ["sampler.tile={size: 384, stride: 192}", "sampler.plan=reference"]),
    "irworobongdo-regions": ("irworobongdo.yaml", ["sampler.tile={size: 384, stride: 192}", "sampler.plan=regions"]),
    "palette": ("palette.yaml", []),
    "palette-continuous-2images": ("palette.yaml", ["sampler.mask_mode=continuous", "sampler.images=2"]),
    "two-subjects": ("two-subjects.yaml", []),
    "two-subjects-multidiffusion": ("two-subjects.yaml", ["sampler.method=multidiffusion", "sampler.steps=3",
                                                         "sampler.tile={size: 256, stride: 128}"]),
    "harbor-sdxl": ("harbor-sdxl.yaml", []),
    "orchard-sd3": ("orchard-sd3.yaml", []),
    "meadow-flux": ("meadow-flux.yaml", []),
    "lanterns-klein": ("lanterns-klein.yaml", []),
    "two-subjects-sd2": ("two-subjects.yaml", ["model.family=sd2"]),  # v-prediction, DDIM 25 steps, guidance 7.5
}


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def fingerprints(names: list[str]) -> dict[str, list[dict[str, str]]]:
    from semanticdraw_cli.render import Renderer
    from semanticdraw_cli.scene.loader import load_scene

    renderer, out = Renderer(device="cpu"), {}
    for name in names:
        file, overrides = VARIANTS[name]
        scene = load_scene(ROOT / "scenes" / file, ["model.checkpoint=tiny", *overrides])
        results = renderer.render(scene)
        out[name] = [
            {"seed": r.seed, "image": digest(r.image.tobytes()), "latent": digest(r.latent.contiguous().numpy().tobytes())}
            for r in results
        ]
        print(name, out[name], file=sys.stderr)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare", type=Path, help="an earlier --out file; exit 1 unless every fingerprint matches")
    parser.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="a subset of the variants")
    args = parser.parse_args()
    torch.set_num_threads(1)  # thread count can change float summation order
    result = {"torch": torch.__version__, "images": fingerprints(args.only or list(VARIANTS))}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.compare is None:
        return 0
    before = json.loads(args.compare.read_text())["images"]
    differ = [name for name, prints in result["images"].items() if before.get(name) != prints]
    print("bit-equal" if not differ else f"DIFFERENT: {', '.join(differ)}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
