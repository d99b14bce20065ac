"""The one contract every model family implements, and the spec a family registers.

The renderer and the sampler see a model only through `FamilyAdapter`; the sampler needs just its
`predict_x0` (`Denoiser`). A family writes only the raw network call (`network_output`) and declares
what the network predicts (`parameterization`); `families.prediction` turns that into `predict_x0`
once, with classifier-free guidance from `families.guidance`. What one call receives per item is a
`Conditioning`. A family module exports one `FamilySpec`; `families.registry` collects the specs in
one place. The spec's facts (defaults, options, pixel multiple) are plain data, read by the scene
schema without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from semanticdraw_cli import defaults

if TYPE_CHECKING:
    import numpy as np
    import torch

    from semanticdraw_cli.families.network import Levers
    from semanticdraw_cli.scene.types import Canvas, Model, Sampler
    from semanticdraw_cli.schedule import StepTable
    from semanticdraw_cli.tiles import Window

Embeddings = dict[str, "torch.Tensor"]  # batch-first tensors keyed by what the network reads; the sampler indexes and lerps them
# What a network's raw output is: noise (eps), velocity a·eps − s·x0 (v_prediction) or flow matching's eps − x0 (flow)
Parameterization = Literal["epsilon", "v_prediction", "flow"]


@dataclass(frozen=True)
class Conditioning:
    """What one network call receives, per item: every field but `variant` is batch-first, so the items of one
    call may come from different regions with different prompts and guidance scales.

    A new per-item input (a reference picture's embedding, a control crop) is one more key of `cond`;
    what needs another network (a region's LoRA set) is `variant`, which the batcher never mixes in a call.
    """

    cond: Embeddings  # (B, ...) per item
    uncond: Embeddings | None  # (B, ...); None: no unconditional branch
    guidance: torch.Tensor  # (B,) float32 guidance scale per item, on the compute device
    windows: Sequence[Window]  # where each item lies on the canvas (size conditioning)
    variant: Hashable = None  # the network variant every item of the call needs; None: the network as loaded
    controls: tuple[ControlInput, ...] = ()  # the ControlNets every item of the call runs through, in order


@dataclass(frozen=True)
class ControlInput:
    """One ControlNet's input to a call: every item of the call uses this ControlNet, each with its own crop
    of its control picture (the item's window, in pixels) and its own weight."""

    model: str  # the ControlNet's reference (hub id, local folder or preset name) as the scene gives it
    image: torch.Tensor  # (B, 3, h·f, w·f) in [0, 1] or (B, C, h, w) latent: each item's crop of its entry's source
    scale: torch.Tensor  # (B,) float32 weight of the ControlNet's residuals per item, on the compute device


class ControlNets(Protocol):
    """What a family whose spec names a `control_class` adds to its adapter (architecture.md §4.2)."""

    def controlnet(self, reference: str) -> torch.nn.Module:
        """The ControlNet of `reference`, loaded once per adapter; refused naming it when made for another family."""

    def control_source(self, reference: str, rgb: np.ndarray) -> tuple[torch.Tensor, int]:
        """A canvas-size control picture (H, W, 3) uint8 -> (what each window's crop is cut from, its units per
        latent pixel): the picture and the latent factor for a UNet's ControlNet, its latent and 1 for sd3/flux."""


class Denoiser(Protocol):
    """What the sampler needs of a model: an x0 estimate for a batch of windows at step i."""

    def predict_x0(self, x: torch.Tensor, table: StepTable, step: int, items: Conditioning) -> torch.Tensor:
        """(B, C, h, w) noisy latents at step `step` -> (B, C, h, w) float32 estimate of each item's clean latent."""


@runtime_checkable
class FamilyAdapter(Denoiser, Protocol):
    """Everything the renderer and the sampler use of a loaded model: the sampler's `Denoiser`, and more."""

    device: torch.device
    dtype: torch.dtype  # what the network computes in; latents and x0 estimates stay float32
    latent_channels: int
    latent_factor: int  # canvas pixels per latent pixel along each side (the VAE's downsampling)
    # True: sampler.guidance > 1 runs classifier-free guidance over the negative prompts. False: the model
    # takes guidance otherwise (a distilled guidance embedding) or not at all, and has no unconditional branch.
    cfg_guidance: bool
    parameterization: Parameterization  # what `network_output` predicts (the checkpoint's prediction_type)
    # A consistency model's boundary condition on the x0 estimate, (x0, x, timestep) -> x0 (LCM); None: none
    boundary: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] | None

    def network_output(
        self, x: torch.Tensor, table: StepTable, step: int, context: Embeddings, guidance: torch.Tensor,
        windows: Sequence[Window],
    ) -> torch.Tensor:
        """The raw network call: (B, C, h, w) float32 inputs on the device, batch-first `context` and
        `guidance` (read only by a guidance-distilled network) -> (B, C, h, w) float32 raw output."""

    def step_table(self, sampler: Sampler, canvas: Canvas) -> StepTable:
        """Timesteps and a_i/s_i levels of `sampler.steps` in the family's schedule; a resolution-dependent
        schedule reads the size of the windows the model sees (`schedules.window_tokens`)."""

    def encode_text(self, texts: Sequence[str]) -> Embeddings:
        """One embedding row per text, batch-first tensors keyed by what `predict_x0` reads."""

    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> (1, C, h, w) float32 latent."""

    def white_latent(self) -> torch.Tensor:
        """(1, C, 1, 1) latent of a white picture, computed once per VAE."""

    def decode(
        self, latents: torch.Tensor, on_tile: Callable[[int, int], None] | None = None,
        wrap: tuple[bool, bool] = (False, False),
    ) -> np.ndarray:
        """(N, C, h, w) latents -> (N, H, W, 3) uint8 pictures; `on_tile(done, total)` after each decoder pass;
        `wrap`: (rows, columns) circular, decoded with circular padding (`canvas.wrap`)."""

    def decode_preview(
        self, latents: torch.Tensor, model: Model, wrap: tuple[bool, bool] = (False, False)
    ) -> np.ndarray:
        """(N, C, h, w) latents -> (N, H, W, 3) uint8 previews (the shape of `decode`'s), through the scene's
        `model.preview_decoder` (loaded on first use, once per adapter); `decode` itself when it is None.
        Never for a final image."""

    # The speed levers: `families.network.NetworkMixin` implements these for every family.
    network: torch.nn.Module  # the denoiser network, eager (as loaded, with any fused levers)
    levers: Levers  # how the network runs now

    def optimize(self, levers: Levers) -> bool:
        """Run the network with exactly these levers (compile, fused QKV, channels-last); True if that changed."""

    def eager(self) -> AbstractContextManager[None]:
        """A context in which `predict_x0` runs the uncompiled network (probes, FLOP counts)."""


@dataclass(frozen=True)
class AcceleratorDefaults:
    """A few-step accelerator: the LoRA that makes the model fast and the scheduler it samples with."""

    lora: str | None  # hub id or path of the LoRA; None: the checkpoint's own weights
    weight_name: str | None  # file inside a hub repo holding several LoRAs
    scheduler: str  # a key of defaults.SCHEDULERS; its steps, grid and guidance are the accelerator's

    @property
    def steps(self) -> tuple[int, ...] | int:
        return defaults.SCHEDULERS[self.scheduler].steps

    @property
    def grid(self) -> int:
        return defaults.SCHEDULERS[self.scheduler].grid

    @property
    def guidance(self) -> float:
        return defaults.SCHEDULERS[self.scheduler].guidance


@dataclass(frozen=True)
class FamilySpec:
    """What registering a family means: its facts, its defaults and how to load and build it."""

    name: str  # model.family in a scene
    pipeline_class: str  # the diffusers pipeline of its checkpoints (model_index.json `_class_name`)
    components: tuple[str, ...]  # model_index.json parts that identify a folder of this family
    checkpoint: str  # default checkpoint
    accelerator: str  # default accelerator, a key of `accelerators`
    accelerators: dict[str, AcceleratorDefaults]
    tile_size: int  # default window side, pixels
    tile_stride: int  # pixels
    own_scheduler_steps: tuple[int, ...] | int  # `accelerator: none` (e.g. a merged LCM checkpoint)
    own_scheduler_grid: int
    own_scheduler: str  # `none`, or a LoRA naming no scheduler: this, or lcm when the checkpoint ships LCMScheduler
    schedulers: tuple[str, ...]  # the scheduler kinds the family's adapter samples with
    load: Callable[[Model, torch.device, torch.dtype], FamilyAdapter]
    build_preset: Callable[[str, Path], None]  # (preset name, folder) -> a diffusers folder in `folder`
    presets: tuple[str, ...] = ("tiny",)
    pixel_multiple: int = defaults.CANVAS_MULTIPLE  # canvas and tile sides; 2×2 latent patches need 16
    options: tuple[str, ...] = ()  # family-only `model` keys this family reads, e.g. drop_t5
    # Presets built on the GPU when loaded, never written (the real architecture: too big for the cache), and
    # their builder: (preset, device, dtype, components to skip) -> the pipeline's components.
    device_presets: tuple[str, ...] = ()
    build_on_device: Callable[[str, torch.device, torch.dtype, frozenset[str]], dict] | None = None
    cuda_dtype: str = "float16"  # `--dtype auto` on CUDA; bfloat16 for models whose activations overflow float16
    # The hub id of the tiny autoencoder (TAESD, diffusers' AutoencoderTiny) that decodes this family's latents, for
    # `model.preview_decoder: tiny-ae`; None: the family has none, and the key is refused
    tiny_autoencoder: str | None = None
    reference_pictures: bool = False  # regions may have a `reference` picture (IP-Adapter, families.ip_adapter)
    control_class: str | None = None  # the diffusers ControlNet class the family's adapter runs; None: no ControlNet
