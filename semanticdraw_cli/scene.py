"""The Scene: plain frozen dataclasses with every default resolved, built by `scene_loader`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import numpy as np


@dataclass(frozen=True)
class Canvas:
    width: int  # pixels, multiple of 8
    height: int


@dataclass(frozen=True)
class Accelerator:
    name: str  # lcm | lightning | hyper | flash | none | lora
    lora: str | None = None  # hub id or path; set for every name but `none`
    weight_name: str | None = None  # file inside a hub repo with several LoRAs
    weight: float = 1.0


@dataclass(frozen=True)
class Model:
    family: str  # sd15 | sdxl | sd3
    checkpoint: str  # hub id, local folder, one .safetensors file, or a built-in preset name
    accelerator: Accelerator
    drop_t5: bool = False  # sd3 only: skip the T5 encoder to save memory


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
class Region:
    name: str
    prompt: str
    negative: str
    mask: Mask
    blur: float  # Gaussian std, pixels
    strength: float
    prompt_strength: float  # lerp from the background prompt's embedding (0) to this prompt's (1)


@dataclass(frozen=True)
class Background:
    prompt: str | None = None
    negative: str = ""
    image: Path | None = None  # painted over: the latent starts from it, uncovered area keeps it
    image_array: np.ndarray | None = field(default=None, compare=False, repr=False)  # (H, W, 3) uint8, layered files


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
