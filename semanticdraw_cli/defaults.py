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
class AcceleratorDefaults:
    """A few-step accelerator: the LoRA that makes the model fast, its scheduler and its step grid."""

    family: str
    lora: str | None  # hub id or path of the LoRA; None: the checkpoint's own weights
    weight_name: str | None  # file inside a hub repo holding several LoRAs
    scheduler: str  # lcm | euler-trailing | flow-euler | ddim
    steps: tuple[int, ...] | int  # indices into a `grid`-step schedule, or a plain count
    grid: int  # length of the schedule that `steps` indexes
    guidance: float


ACCELERATORS: dict[str, AcceleratorDefaults] = {
    "lcm": AcceleratorDefaults("sd15", "latent-consistency/lcm-lora-sdv1-5", None, "lcm", (0, 4, 12, 25, 37), 50, 1.0),
    "lightning": AcceleratorDefaults(
        "sdxl", "ByteDance/SDXL-Lightning", "sdxl_lightning_4step_lora.safetensors", "euler-trailing", 4, 4, 1.0
    ),
    "hyper": AcceleratorDefaults(
        "sdxl", "ByteDance/Hyper-SD", "Hyper-SDXL-4steps-lora.safetensors", "euler-trailing", 4, 4, 1.0
    ),
    "flash": AcceleratorDefaults("sd3", "jasperai/flash-sd3", None, "flow-euler", 4, 4, 0.0),
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
    pixel_multiple: int = CANVAS_MULTIPLE  # canvas and tile sides: SD3's transformer reads 2×2 latent patches


FAMILIES: dict[str, FamilyDefaults] = {
    "sd15": FamilyDefaults("stable-diffusion-v1-5/stable-diffusion-v1-5", "lcm", 768, 384, (0, 4, 12, 25, 37), 50),
    "sdxl": FamilyDefaults("stabilityai/stable-diffusion-xl-base-1.0", "lightning", 1024, 512, 4, 4),
    "sd3": FamilyDefaults("stabilityai/stable-diffusion-3-medium-diffusers", "flash", 1024, 512, 4, 4, 16),
}
FAMILY = "sd15"

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

# Prompt adherence (`semanticdraw score`, `render --score`): the paper's CLIP score per region.
CLIP_CHECKPOINT = "openai/clip-vit-large-patch14"  # the CLIP of the usual CLIP score (torchmetrics' default)
CLIP_PRESETS = ("tiny",)  # --model-clip tiny: random weights built locally, for tests (the numbers mean nothing)
CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's; pixels outside a region are filled with it
SCORE_MASK_THRESHOLD = 0.5  # a pixel counts for the region whose render mask is strongest there, if at least this
MAX_CLIP_SCORE = 100  # score = max(100 * cosine, 0)
MIN_REGION_SCORE = None  # quality.min_region_score: no gate unless a scene or --min-score sets one
MIN_BACKGROUND_SCORE = None  # quality.min_background_score
