"""CLIP for prompt adherence: a transformers CLIPModel + CLIPProcessor behind one narrow callable.

`load_clip(checkpoint, device)` returns a `ClipSimilarity`: cosines of (image, text) pairs. The
checkpoint is a hub id, a local folder (`save_pretrained` of a CLIPModel and its CLIPProcessor), or
the built-in preset `tiny` (seeded random weights, built locally like the diffusion presets).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import presets
from semanticdraw_cli.families.hub import quiet_loading, readable_source, why_offline

PRESET_FAMILY = "clip"  # preset folders: $SEMANTICDRAW_CACHE/presets/clip-NAME-vN
PRESET_MARKER = "config.json"
TINY = {"width": 32, "layers": 2, "heads": 2, "projection": 16, "image_size": 32, "patch": 8}
BATCH = 16  # crops per forward pass


class ClipSimilarity:
    """One CLIP checkpoint, loaded once: `similarity(images, texts)` -> the cosine of each pair."""

    def __init__(self, model, processor, checkpoint: str, device: torch.device):
        self.model = model.to(device, torch.float32).eval()  # float32 everywhere: comparable numbers
        self.processor = processor
        self.checkpoint = checkpoint
        self.device = device

    @property
    def fill(self) -> tuple[int, int, int]:
        """The checkpoint's image mean as RGB 0-255: zero after its normalisation."""
        mean = getattr(self.processor.image_processor, "image_mean", None) or defaults.CLIP_IMAGE_MEAN
        return tuple(int(round(255 * float(v))) for v in mean)

    @torch.inference_mode()
    def __call__(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> np.ndarray:
        """(N,) cosine between image k ((h, w, 3) uint8) and text k, float32 on any device."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        out = []
        for start in range(0, len(images), BATCH):
            batch = self.processor(
                text=list(texts[start:start + BATCH]), images=list(images[start:start + BATCH]),
                return_tensors="pt", padding=True, truncation=True,
            )
            result = self.model(**{k: v.to(self.device) for k, v in batch.items()})
            # image_embeds, text_embeds: (n, D), L2-normalised by CLIPModel.forward
            out.append((result.image_embeds.float() * result.text_embeds.float()).sum(dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def load_clip(checkpoint: str, device: str | torch.device | None = None) -> ClipSimilarity:
    """CLIPModel + CLIPProcessor from a preset, hub id or folder; RenderError saying what to do."""
    with quiet_loading():
        return _load_clip(checkpoint, device)


def _load_clip(checkpoint: str, device: str | torch.device | None) -> ClipSimilarity:
    from transformers import CLIPModel, CLIPProcessor

    from semanticdraw_cli.devices import pick_device
    from semanticdraw_cli.families.loading import quiet_libraries

    quiet_libraries()
    device = device if isinstance(device, torch.device) else pick_device(device)
    target = str(ensure_clip_preset(checkpoint)) if checkpoint in defaults.CLIP_PRESETS else checkpoint
    if _looks_local(checkpoint) and not Path(checkpoint).expanduser().is_dir():
        raise missing_clip_error(checkpoint, FileNotFoundError(f"no such folder: {checkpoint}"))
    target = str(Path(target).expanduser()) if _looks_local(target) else target
    try:
        target = readable_source(target)
        model = CLIPModel.from_pretrained(target)
        processor = CLIPProcessor.from_pretrained(target)
    except (OSError, ValueError) as error:
        raise missing_clip_error(checkpoint, error) from error
    return ClipSimilarity(model, processor, checkpoint, device)


def missing_clip_error(source: str, error: Exception) -> RenderError:
    """A CLIP checkpoint that cannot be loaded: what was tried and what to do."""
    offline = None if _looks_local(source) else why_offline()
    folder = "point --model-clip to a folder holding a CLIPModel and its CLIPProcessor (save_pretrained of both)"
    if _looks_local(source):
        fetch = folder
    elif offline:
        fetch = (f"{offline}, so nothing is downloaded: run once with network access and "
                 f"HF_HUB_OFFLINE unset (transformers caches the files it needs), or {folder}")
    else:
        fetch = f"check the id and your network, or {folder}"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return RenderError(
        f"cannot load CLIP model {source!r}: {first_line}\n"
        f"what to do: {fetch}; --model-clip tiny checks the mechanics offline "
        "(random weights: the numbers mean nothing)"
    )


def _looks_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).exists()


def ensure_clip_preset(name: str) -> Path:
    """The preset's folder, built on first use into the preset cache."""
    folder = presets.preset_folder(PRESET_FAMILY, name)
    return presets.build_cached(folder, lambda staging: build_clip_preset(name, staging), marker=PRESET_MARKER)


def build_clip_preset(name: str, folder: Path) -> None:
    """A CLIPModel with seeded random weights, the local CLIP tokenizer and a small image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer, CLIPVisionConfig

    if name != "tiny":
        raise RenderError(f"no CLIP preset {name!r}; built-in: {', '.join(defaults.CLIP_PRESETS)}")
    s = TINY
    vocab = presets.write_clip_tokenizer(folder)
    text = presets.clip_text_config(vocab, s["width"], s["layers"], s["heads"], s["projection"])
    vision = CLIPVisionConfig(
        hidden_size=s["width"], intermediate_size=4 * s["width"], num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"], image_size=s["image_size"], patch_size=s["patch"],
        projection_dim=s["projection"],
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=s["projection"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(presets.SEED)
        model = CLIPModel(config)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": s["image_size"]}, crop_size={"height": s["image_size"], "width": s["image_size"]},
        image_mean=list(defaults.CLIP_IMAGE_MEAN),
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=CLIPTokenizer.from_pretrained(folder))
    processor.save_pretrained(folder)
    model.save_pretrained(folder)  # config.json: the marker of a finished build

