"""Every default of the tool, defined once; family-specific defaults live in each family's spec."""

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
# Memory the region masks of a render take (estimated before anything is allocated, checks.mask_memory):
# prepare holds about this many float32 (R, H, W) copies at its peak (cached rasters, their stack, the
# z-ordered and blurred masks, blur temporaries; 4.25 measured at 2048x2048 with 16 regions).
MASK_CANVAS_COPIES = 4.5
MAX_MASK_BYTES = 32 * 1024**3  # a scene whose masks would need more is refused (8192x8192, 256 regions, 5 steps: ~300 GiB)

MAX_POLYGON_POINTS = 10_000  # points of one polygon mask; also the longest list a scene file may hold
MAX_SHAPE_COORDINATE = 1_000_000  # |coordinate| of rect/ellipse/polygon masks, pixels or fractions
MAX_BLUR = 256  # mask Gaussian std, pixels; the kernel reaches 3 std, so blur costs grow with it
MAX_NUMBER = 1_000_000  # |value| of any other number a scene sets; bigger ones overflow the float math
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 64-bit seeds; seed + images - 1 must fit too
MAX_LAYER_DEPTH = 64  # nested groups (<stack>s) of a layered drawing
MAX_LAYER_OFFSET = 2**31 - 1  # |x| and |y| of a layer, pixels (32-bit in PSD)
MAX_DRAWING_PIXELS = 2**30  # pixels decoded from one layered drawing in all (16 full layers at 8192x8192; 4 GiB as RGBA)

# Bytes read from input files at most (a larger file is refused before it is read), and input YAML.
MAX_SCENE_BYTES = 1024 * 1024  # a scene file; 256 regions with prompts take ~100 KB, a 10,000-point polygon ~120 KB
MAX_SETTINGS_BYTES = 1024 * 1024  # the settings (sidecar) YAML of a layered drawing
MAX_PSD_BYTES = 1024**3  # a .psd drawing, read whole into memory
MAX_ORA_BYTES = 1024**3  # a .ora drawing (zip archive), read member by member
MAX_ORA_MEMBERS = 10_000  # files inside a .ora archive (layers, thumbnails, stack.xml)
MAX_STACK_XML_BYTES = 16 * 1024 * 1024  # a .ora's stack.xml, inflated
MAX_PICTURE_BYTES = 256 * 1024 * 1024  # one PNG/JPEG mask, label map or background, a .ora layer inflated, a rendered PNG
MAX_EMBEDDED_TEXT_BYTES = 2 * MAX_SCENE_BYTES  # the scene or params text chunk of a rendered PNG (all defaults spelled out)
MAX_PNG_CHUNKS = 100_000  # chunks of a PNG that `score`/`inspect` read; a 256 MiB PNG in 8 KiB IDATs has ~33,000
MAX_YAML_NODES = 1_000_000  # values in one YAML text, aliases expanded; stops "billion laughs" before expanding
MAX_YAML_DEPTH = 64  # nesting of mappings and lists in one YAML text, aliases expanded
MAX_PROBLEMS_LISTED = 50  # problems printed per file (the rest counted in one line), and did-you-mean hints worked out

MASK_RESIZE_ASPECT_TOLERANCE = 0.01  # a mask image of another size is resized when aspects match this well
LABEL_COLOR_TOLERANCE = 8  # max per-channel difference that still counts as the label colour

LORA_WEIGHT = 1.0  # strength of a fused accelerator LoRA, and of a region's LoRA without a weight
REFERENCE_WEIGHT = 0.6  # IP-Adapter scale of a region's reference picture (diffusers' examples use 0.5-0.7)
MAX_REFERENCE_WEIGHT = 2.0  # beyond this the picture swamps the prompt
MAX_REGION_LORAS = 16  # distinct LoRA files of one scene's regions: each stays loaded beside the network
MAX_LORA_BYTES = 4 * 1024**3  # one region LoRA file (hashed whole; only its header is read when validating)
MAX_LORA_HEADER_BYTES = 64 * 1024 * 1024  # a .safetensors header: the names and shapes of its tensors
# Names that mean a local file rather than a hub id; diffusers reads the first two as one-file checkpoints.
CHECKPOINT_FILE_SUFFIXES = (".safetensors", ".ckpt")
WEIGHT_FILE_SUFFIXES = (*CHECKPOINT_FILE_SUFFIXES, ".bin")


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

# Each family's checkpoint, accelerators, tile and pixel multiple live in its FamilySpec
# (semanticdraw_cli/families/), collected by families.registry.
FAMILY = "sd15"
PRESET_NAMES = ("tiny", "small", "full-random")  # built-in random-weight checkpoints, built locally
OFFLOADS = ("none", "model", "sequential")  # model.offload: diffusers' CPU offload of whole networks or layers
OFFLOAD = "none"
MAX_TEXT_TOKENS = 512  # model.text_tokens: the longest prompt encoding a family reads (T5's 512)
# model.preview_decoder: what decodes watch's step previews (absent: the full VAE, as final images always are);
# tiny-ae is the family's TAESD (FamilySpec.tiny_autoencoder), a random one with a preset checkpoint
TINY_AE = "tiny-ae"

METHODS = ("semanticdraw", "multidiffusion")
METHOD = "semanticdraw"
# Classic MultiDiffusion (Bar-Tal et al. 2023) as published: DDIM 50 steps, guidance 7.5,
# windows of 64 latent pixels with stride 8.
MULTIDIFFUSION_STEPS = 50
MULTIDIFFUSION_GUIDANCE = 7.5
MULTIDIFFUSION_TILE_SIZE = 512
MULTIDIFFUSION_TILE_STRIDE = 64

WRAPS = ("none", "x", "y", "both")  # canvas.wrap: the edges windows, masks and the VAE's decoding wrap around
WRAP = "none"
HIRES_SCALE = 2.0  # hires.scale: canvas side / pass-1 side
HIRES_STRENGTH = 0.35  # hires.strength: pass 2 runs the last ceil(strength × steps) of its steps
HIRES_UPSCALERS = ("lanczos", "bicubic", "nearest")  # Pillow's resampling filters of the same names
HIRES_UPSCALER = "lanczos"

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
MAX_BATCH = "auto"  # (window, region) pairs per network call, or auto (batching.auto_max_batch); guidance doubles them
AUTO_BATCH_OFF_CUDA = 8  # auto off CUDA: batch size does not matter on CPU (benchmarks/README.md), 8 bounds memory
AUTO_BATCH_MEMORY_SHARE = 0.8  # share of the free CUDA memory an auto batch may take, at the probed bytes per item
# Speed levers of the network (families/network.py), each switchable alone so it can be measured alone.
COMPILE = False  # sampler.compile: false, true, or a torch.compile mode
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COMPILE_MODE_CUDA = "reduce-overhead"  # what `true` means on CUDA: inductor kernels replayed as CUDA graphs
COMPILE_MODE_OTHER = "default"  # what `true` means elsewhere (CUDA graphs need CUDA)
COMPILE_BACKEND = "inductor"
FUSE_QKV = False  # one projection for attention's q, k, v (diffusers' fuse_qkv_projections)
CHANNELS_LAST = False  # convolution weights in channels-last memory format
# The device's peak for the report's share of it (flops.py): one square matrix product of this side.
PEAK_MATMUL_SIDE_CUDA = 8192
PEAK_MATMUL_SIDE = 1024  # elsewhere: a CPU takes tens of milliseconds at this side
PEAK_MATMUL_WARMUP = 2
PEAK_MATMUL_REPEATS = 5

NEGATIVE = ""
BLUR = 1.0  # Gaussian std of the mask edge, pixels
STRENGTH = 1.0
PROMPT_STRENGTH = 1.0

OUTPUT_DIR = "."
SERVE_PORT = 8765  # `watch --serve` without a port; the page listens on 127.0.0.1 only
SERVE_REQUEST_TIMEOUT = 10.0  # seconds a `--serve` client may take to send its request (or to take data sent)
SERVE_MAX_CONNECTIONS = 32  # connections `--serve` holds at once (event streams included); more get 503
DTYPES = ("float16", "bfloat16", "float32")  # --dtype; "auto" picks the family's cuda_dtype on CUDA (float16 by default), float32 elsewhere

# Prompt adherence (`semanticdraw score`, `render --score`): the paper's CLIP score per region.
CLIP_CHECKPOINT = "openai/clip-vit-large-patch14"  # the CLIP of the usual CLIP score (torchmetrics' default)
CONTROL_PRESETS = ("tiny", "small")  # `control[].model` names: ControlNets built from the family preset of that name
CLIP_PRESETS = ("tiny",)  # --model-clip tiny: random weights built locally, for tests (the numbers mean nothing)
CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's; pixels outside a region are filled with it
SCORE_MASK_THRESHOLD = 0.5  # a pixel counts for the region whose render mask is strongest there, if at least this
CONTROL_WEIGHT = 1.0  # control[].weight: the ControlNet residuals at full strength, as trained
MAX_CONTROL_WEIGHT = 10  # control[].weight; past 2 a ControlNet mostly burns the picture
MAX_CLIP_SCORE = 100  # score = max(100 * cosine, 0)
MIN_REGION_SCORE = None  # quality.min_region_score: no gate unless a scene or --min-score sets one
MIN_BACKGROUND_SCORE = None  # quality.min_background_score

# Waiting, and saying so.
HUB_PROBE_SECONDS = 3  # a hub id not cached: how long to wait for the hub before saying it cannot be reached
PROGRESS_NOTE_SECONDS = 10  # without a terminal, a sampling step this long prints a line on its windows done

# CI asset builds: content keys, freshness, goldens.
FILE_HASH_CACHE = "file-hashes.json"  # under $SEMANTICDRAW_CACHE: sha256 of model files by path, size, mtime, inode
GOLDEN_TOLERANCE = 1.0  # render --golden: the largest mean absolute difference (0-255) allowed in any region
SSIM_STD = 1.5  # the Gaussian window of SSIM (Wang et al. 2004): 11 taps
MAX_REPORT_BYTES = 64 * 1024 * 1024  # a NAME-SEED.json read back by `render --changed` and `check`
