"""The Scene: plain frozen dataclasses with every default resolved, built by `scene.loader`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Canvas:
    width: int  # pixels, multiple of 8
    height: int
    wrap: str = "none"  # none | x | y | both: windows, masks and decoding wrap around these edges (seamless tiles)


@dataclass(frozen=True)
class Accelerator:
    name: str  # lcm | lightning | hyper | flash | none | lora
    lora: str | None = None  # hub id or path; set for every name but `none`
    weight_name: str | None = None  # file inside a hub repo with several LoRAs
    weight: float = 1.0
    # a key of defaults.SCHEDULERS; None: a named accelerator's own (the schema fills it in), else the checkpoint's
    scheduler: str | None = None


@dataclass(frozen=True)
class Model:
    family: str  # a registered family: sd15 | sdxl | sd3 | ...
    checkpoint: str  # hub id, local folder, one .safetensors file, or a built-in preset name
    accelerator: Accelerator
    drop_t5: bool = False  # families with T5 that list it in their options: skip T5 to save memory
    offload: str = "none"  # none | model | sequential: keep weights in CPU memory, moved to the GPU per use
    text_tokens: int | None = None  # families that list it: text-encoder tokens per prompt (None: the family's)
    # What decodes watch's step previews: tiny-ae, a folder or hub id; None: the full VAE. Not part of the model's
    # identity (equality, hash): the networks it loads and the final images are the same with any value
    preview_decoder: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Bootstrap:
    steps: int
    mix: float
    leak_sensitivity: float


@dataclass(frozen=True)
class Tile:
    size: int  # pixels, multiple of 8
    stride: int  # pixels, multiple of 8


@dataclass(frozen=True)
class Sampler:
    method: str  # semanticdraw | multidiffusion
    steps: tuple[int, ...]  # indices into a `grid`-step schedule
    grid: int
    guidance: float
    seed: int
    images: int
    bootstrap: Bootstrap
    mask_mode: str  # discrete | semi-continuous | continuous
    tile: Tile
    plan: str  # default | reference | regions
    cover_alpha: float
    max_batch: int | str  # items per network call, or "auto"
    compile: bool | str = False  # torch.compile the network: true, or a mode name (defaults.COMPILE_MODES)
    fuse_qkv: bool = False  # fused q/k/v attention projections
    channels_last: bool = False  # channels-last convolution weights


@dataclass(frozen=True)
class Mask:
    """Where a region lies. `kind` picks which of the other fields matter."""

    kind: str  # image | label_map | rect | ellipse | polygon | array
    path: Path | None = None  # image, label_map
    color: tuple[int, int, int] | None = None  # label_map
    # rect: (x, y, w, h); ellipse: (cx, cy, rx, ry); polygon: (x0, y0, x1, y1, ...)
    coords: tuple[float, ...] = ()
    fractional: bool = False  # coords are fractions of the canvas width/height
    array: np.ndarray | None = field(default=None, compare=False, repr=False)  # kind "array": (H, W) in [0, 1]


@dataclass(frozen=True)
class Reference:
    """An image prompt for one region's items (IP-Adapter)."""

    image: Path  # the reference picture, any size (the adapter's image encoder resizes it)
    weight: float  # the adapter's scale for this region's items; 0: no effect
    adapter: str  # the IP-Adapter weights: a local file (its image_encoder/ folder beside it) or owner/repo/path/file


@dataclass(frozen=True)
class Control:
    """A ControlNet entry: a structure picture (pose, depth, lines) at canvas size that holds the layout."""

    model: str  # hub id, local folder (absolute), or a preset name (tiny, small)
    image: Path | None  # the control picture; None: from a layered drawing's `control` layer (image_array)
    weight: float = 1.0  # scale of the ControlNet's residuals
    start: float = 0.0  # share of the steps before the ControlNet acts
    end: float = 1.0  # share of the steps after which it stops
    image_array: np.ndarray | None = field(default=None, compare=False, repr=False)  # (H, W, 3) uint8, layered files


@dataclass(frozen=True)
class RegionLora:
    """A LoRA applied to one region's network calls only (at `weight`), on top of the accelerator."""

    lora: str  # hub id, or an absolute path to a .safetensors file
    weight: float = 1.0
    weight_name: str | None = None  # file inside a hub repo holding several LoRAs
    sha256: str | None = None  # of the local file, read when the scene loads; None for a hub id


@dataclass(frozen=True)
class Region:
    name: str
    prompt: str
    negative: str
    mask: Mask
    blur: float  # Gaussian std, pixels
    strength: float
    prompt_strength: float  # lerp from the background prompt's embedding (0) to this prompt's (1)
    min_score: float | None = None  # CLIP score gate of this region; None: quality.min_region_score
    reference: Reference | None = None  # an image prompt for this region's items; None: none
    seed: int | None = None  # the initial and bootstrap noise where this region lies on top; None: the image's
    guidance: float | None = None  # this region's guidance scale; None: sampler.guidance
    control: tuple[Control, ...] = ()  # ControlNet entries for this region's pairs only
    loras: tuple[RegionLora, ...] = ()  # applied to this region's pairs only; weight 0 entries are kept but do nothing


@dataclass(frozen=True)
class Background:
    prompt: str | None = None
    negative: str = ""
    image: Path | None = None  # painted over: the latent starts from it, uncovered area keeps it
    image_array: np.ndarray | None = field(default=None, compare=False, repr=False)  # (H, W, 3) uint8, layered files


@dataclass(frozen=True)
class Quality:
    """Prompt-adherence gate: the CLIP scores (0-100) a render must reach; None: not gated."""

    min_region_score: float | None = None  # every region without its own min_score
    min_background_score: float | None = None


@dataclass(frozen=True)
class Hires:
    """A second pass: render at canvas/scale, upscale, paint over it at full size with every region."""

    scale: float  # canvas side / pass-1 side, >= 1
    strength: float  # share of pass 2's steps run, from the end of its schedule; 0: the upscaled pass 1
    steps: tuple[int, ...]  # pass 2's step indices into a `grid`-step schedule (the sampler's by default)
    grid: int
    upscaler: str  # a key of defaults.HIRES_UPSCALERS


@dataclass(frozen=True)
class Reroll:
    """Re-render only `regions` over `image` (an earlier render of this scene); every other pixel is kept."""

    image: Path
    regions: tuple[str, ...]  # region names


@dataclass(frozen=True)
class Scene:
    name: str  # output file stem
    canvas: Canvas
    model: Model
    sampler: Sampler
    background: Background
    regions: tuple[Region, ...]
    source: Path | None = None  # the file it was loaded from; relative paths resolved against it
    version: int = 1
    quality: Quality = Quality()
    hires: Hires | None = None  # a second, full-size pass over the upscaled first (hires.py)
    reroll: Reroll | None = None  # `render --from IMAGE --reroll NAME`: keep the rest of IMAGE
    variant: int | None = None  # `--variants all`: this combination's index K, written as NAME-SEED-vK
    control: tuple[Control, ...] = ()  # ControlNet entries for every pair (the whole canvas)
