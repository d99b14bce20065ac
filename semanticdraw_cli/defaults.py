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

MAX_POLYGON_POINTS = 10_000  # points of one polygon mask; also the longest list a scene file may hold
MAX_SHAPE_COORDINATE = 1_000_000  # |coordinate| of rect/ellipse/polygon masks, pixels or fractions
MAX_BLUR = 256  # mask Gaussian std, pixels; the kernel reaches 3 std, so blur costs grow with it
MAX_NUMBER = 1_000_000  # |value| of any other number a scene sets; bigger ones overflow the float math
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 64-bit seeds; seed + images - 1 must fit too
MAX_LAYER_DEPTH = 64  # nested groups (<stack>s) of a layered drawing
MAX_LAYER_OFFSET = 2**31 - 1  # |x| and |y| of a layer, pixels (32-bit in PSD)

# Bytes read from input files at most (a larger file is refused before it is read), and input YAML.
MAX_SCENE_BYTES = 1024 * 1024  # a scene file; 256 regions with prompts take ~100 KB, a 10,000-point polygon ~120 KB
MAX_SETTINGS_BYTES = 1024 * 1024  # the settings (sidecar) YAML of a layered drawing
MAX_PSD_BYTES = 1024**3  # a .psd drawing, read whole into memory
MAX_ORA_BYTES = 1024**3  # a .ora drawing (zip archive), read member by member
MAX_ORA_MEMBERS = 10_000  # files inside a .ora archive (layers, thumbnails, stack.xml)
MAX_STACK_XML_BYTES = 16 * 1024 * 1024  # a .ora's stack.xml, inflated
MAX_PICTURE_BYTES = 256 * 1024 * 1024  # one PNG/JPEG mask, label map or background, a .ora layer inflated, a rendered PNG
MAX_EMBEDDED_TEXT_BYTES = 2 * MAX_SCENE_BYTES  # the scene or params text chunk of a rendered PNG (all defaults spelled out)
MAX_YAML_NODES = 1_000_000  # values in one YAML text, aliases expanded; stops "billion laughs" before expanding
MAX_YAML_DEPTH = 64  # nesting of mappings and lists in one YAML text, aliases expanded

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
MAX_BATCH = 8  # (window, region) pairs per UNet call; the guidance branch doubles the items

NEGATIVE = ""
BLUR = 1.0  # Gaussian std of the mask edge, pixels
STRENGTH = 1.0
PROMPT_STRENGTH = 1.0

OUTPUT_DIR = "."
SERVE_PORT = 8765  # `watch --serve` without a port; the page listens on 127.0.0.1 only
DTYPES = ("float16", "bfloat16", "float32")  # --dtype; "auto" picks float16 on CUDA, float32 elsewhere

# Prompt adherence (`semanticdraw score`, `render --score`): the paper's CLIP score per region.
CLIP_CHECKPOINT = "openai/clip-vit-large-patch14"  # the CLIP of the usual CLIP score (torchmetrics' default)
CLIP_PRESETS = ("tiny",)  # --model-clip tiny: random weights built locally, for tests (the numbers mean nothing)
CLIP_IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's; pixels outside a region are filled with it
SCORE_MASK_THRESHOLD = 0.5  # a pixel counts for the region whose render mask is strongest there, if at least this
MAX_CLIP_SCORE = 100  # score = max(100 * cosine, 0)
MIN_REGION_SCORE = None  # quality.min_region_score: no gate unless a scene or --min-score sets one
MIN_BACKGROUND_SCORE = None  # quality.min_background_score
