"""Every default of the tool, defined once. The scene loader, the CLI and the adapters read them here."""

from __future__ import annotations

from dataclasses import dataclass

SCENE_VERSION = 1

# Limits that refuse absurd input before it exhausts memory.
CANVAS_MULTIPLE = 8  # the VAE downsamples by 8
MAX_CANVAS_SIDE = 16384  # pixels
MAX_CANVAS_PIXELS = 8192 * 8192
MAX_REGIONS = 256
MAX_IMAGES = 256  # --images / sampler.images
MAX_GRID = 1000  # sampler.steps / sampler.grid: a schedule has at most the 1000 training timesteps
MAX_MASK_IMAGE_PIXELS = 16384 * 16384  # mask, label map and background pictures; Pillow's bomb check

MASK_RESIZE_ASPECT_TOLERANCE = 0.01  # a mask image of another size is resized when aspects match this well
LABEL_COLOR_TOLERANCE = 8  # max per-channel difference that still counts as the label colour


@dataclass(frozen=True)
class ScheduleDefaults:
    """What a scheduler kind samples with unless the scene's sampler says otherwise."""

    steps: tuple[int, ...] | int  # indices into a `grid`-step schedule, or a plain count
    grid: int  # length of the schedule that `steps` indexes
    guidance: float


SCHEDULERS: dict[str, ScheduleDefaults] = {
    "lcm": ScheduleDefaults((0, 4, 12, 25, 37), 50, 1.0),  # LCM (stochastic): 5 steps of the 50-step LCM grid
    "euler-trailing": ScheduleDefaults(4, 4, 1.0),  # Euler, trailing timesteps: SDXL-Lightning, Hyper-SD
    "flow-euler": ScheduleDefaults(4, 4, 0.0),  # flow-matching Euler: Flash SD3
    "ddim": ScheduleDefaults(50, 50, 7.5),  # a base model's usual DDIM sampling
}


@dataclass(frozen=True)
class AcceleratorDefaults:
    """A few-step accelerator: the LoRA that makes the model fast and the scheduler it samples with."""

    family: str
    lora: str | None  # hub id or path of the LoRA; None: the checkpoint's own weights
    weight_name: str | None  # file inside a hub repo holding several LoRAs
    scheduler: str  # a key of SCHEDULERS; its steps, grid and guidance are the accelerator's

    @property
    def steps(self) -> tuple[int, ...] | int:
        return SCHEDULERS[self.scheduler].steps

    @property
    def grid(self) -> int:
        return SCHEDULERS[self.scheduler].grid

    @property
    def guidance(self) -> float:
        return SCHEDULERS[self.scheduler].guidance


ACCELERATORS: dict[str, AcceleratorDefaults] = {
    "lcm": AcceleratorDefaults("sd15", "latent-consistency/lcm-lora-sdv1-5", None, "lcm"),
    "lightning": AcceleratorDefaults(
        "sdxl", "ByteDance/SDXL-Lightning", "sdxl_lightning_4step_lora.safetensors", "euler-trailing"
    ),
    "hyper": AcceleratorDefaults("sdxl", "ByteDance/Hyper-SD", "Hyper-SDXL-4steps-lora.safetensors", "euler-trailing"),
    "flash": AcceleratorDefaults("sd3", "jasperai/flash-sd3", None, "flow-euler"),
}
ACCELERATOR_NAMES = (*ACCELERATORS, "none")
LORA_WEIGHT = 1.0


@dataclass(frozen=True)
class FamilyDefaults:
    checkpoint: str
    accelerator: str
    tile_size: int  # pixels
    tile_stride: int  # pixels
    own_scheduler_steps: tuple[int, ...] | int  # `accelerator: none` (e.g. a merged LCM checkpoint)
    own_scheduler_grid: int
    own_scheduler: str  # `none`, or a LoRA naming no scheduler: this, or lcm when the checkpoint ships LCMScheduler
    schedulers: tuple[str, ...]  # the kinds the family's adapter samples with
    pixel_multiple: int = CANVAS_MULTIPLE  # canvas and tile sides: SD3's transformer reads 2×2 latent patches


FAMILIES: dict[str, FamilyDefaults] = {
    "sd15": FamilyDefaults(
        "stable-diffusion-v1-5/stable-diffusion-v1-5", "lcm", 768, 384, (0, 4, 12, 25, 37), 50,
        own_scheduler="ddim", schedulers=("lcm", "ddim", "euler-trailing"),
    ),
    "sdxl": FamilyDefaults(
        "stabilityai/stable-diffusion-xl-base-1.0", "lightning", 1024, 512, 4, 4,
        own_scheduler="euler-trailing", schedulers=("euler-trailing", "lcm", "ddim"),
    ),
    "sd3": FamilyDefaults(
        "stabilityai/stable-diffusion-3-medium-diffusers", "flash", 1024, 512, 4, 4,
        own_scheduler="flow-euler", schedulers=("flow-euler",), pixel_multiple=16,
    ),
}
FAMILY = "sd15"
PRESET_NAMES = ("tiny", "small", "full-random")  # built-in random-weight checkpoints, built locally

METHODS = ("semanticdraw", "multidiffusion")
METHOD = "semanticdraw"
# Classic MultiDiffusion (Bar-Tal et al. 2023) as published: DDIM 50 steps, guidance 7.5,
# windows of 64 latent pixels with stride 8.
MULTIDIFFUSION_STEPS = 50
MULTIDIFFUSION_GUIDANCE = 7.5
MULTIDIFFUSION_TILE_SIZE = 512
MULTIDIFFUSION_TILE_STRIDE = 64

SEED = 2024
IMAGES = 1
BOOTSTRAP_STEPS = 1  # steps that use mask-centering bootstrapping
BOOTSTRAP_MIX = 1.0  # white-vs-base mix of the bootstrap background, decays by 1 per step
BOOTSTRAP_LEAK_SENSITIVITY = 0.2
MASK_MODES = ("discrete", "semi-continuous", "continuous")
MASK_MODE = "discrete"
COVER_ALPHA = 0.3  # an earlier region keeps this share of its mask where a later one lies on top
PLANS = ("default", "reference", "regions")
PLAN = "default"
MAX_BATCH = 8  # (window, region) pairs per UNet call; the guidance branch doubles the items

NEGATIVE = ""
BLUR = 1.0  # Gaussian std of the mask edge, pixels
STRENGTH = 1.0
PROMPT_STRENGTH = 1.0

OUTPUT_DIR = "."
DTYPES = ("float16", "bfloat16", "float32")  # --dtype; "auto" picks float16 on CUDA, float32 elsewhere
