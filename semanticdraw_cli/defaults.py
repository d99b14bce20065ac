"""Every default of the tool, defined once; family-specific defaults live in each family's spec."""

from __future__ import annotations

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

LORA_WEIGHT = 1.0  # strength of a fused accelerator LoRA
# Names that mean a local file rather than a hub id; diffusers reads the first two as one-file checkpoints.
CHECKPOINT_FILE_SUFFIXES = (".safetensors", ".ckpt")
WEIGHT_FILE_SUFFIXES = (*CHECKPOINT_FILE_SUFFIXES, ".bin")

# Each family's checkpoint, accelerators, tile and pixel multiple live in its FamilySpec
# (semanticdraw_cli/families/), collected by families.registry.
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
DTYPES = ("float16", "bfloat16", "float32")  # --dtype; "auto" picks float16 on CUDA, float32 elsewhere
