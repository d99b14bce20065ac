"""The `model` section of a scene as checks: family, checkpoint, accelerator, the family-only options and
`model.preview_decoder` (what decodes `watch`'s step previews, never a final image: absent or `none`, the full
VAE; `tiny-ae`, the family's TAESD, refused for a family that has none; else a local AutoencoderTiny folder or a
hub id, read when the first preview is decoded)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from semanticdraw_cli import defaults as D
from semanticdraw_cli.families import registry
from semanticdraw_cli.scene.checks import Checker, describe
from semanticdraw_cli.scene.safe_io import exists
from semanticdraw_cli.scene.sources import looks_local, path_field
from semanticdraw_cli.scene.types import Accelerator, Model

FAMILY_OPTIONS = tuple(dict.fromkeys(option for spec in registry.families().values() for option in spec.options))
ACCELERATOR_KEYS = ("lora", "weight", "weight_name", "scheduler")
HUB_ID = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")  # owner/name
PATH_HINT = "a path on the command line is relative to the current folder, in a scene file to the scene's folder"
PREVIEW_KEY = "model.preview_decoder"
PREVIEW_HINT = f"{D.TINY_AE} (the family's TAESD), a local AutoencoderTiny folder (./name) or a hub id (owner/name)"


def model_section(c: Checker, d: dict, base: Path, classic: bool) -> Model:
    """Classic MultiDiffusion defaults to no accelerator (the base model with DDIM), as published."""
    families = registry.families()
    family = c.choice(d, "family", "model.family", tuple(families), D.FAMILY)
    checkpoint = c.text(d, "checkpoint", "model.checkpoint", families[family].checkpoint)
    checkpoint = _reference(c, checkpoint, base, "model.checkpoint")
    accelerator = d.get("accelerator")
    if accelerator is None:
        accelerator = "none" if classic else families[family].accelerator
    accelerator = _accelerator(c, accelerator, family, base)
    for option in FAMILY_OPTIONS:
        if d.get(option) and option not in families[family].options:  # false or absent is the same
            having = [name for name, spec in families.items() if option in spec.options]
            c.add(f"model.{option}", f"applies to {' and '.join(having)} only, the family is {family}", hint="remove it")
    drop_t5 = c.flag(d, "drop_t5", "model.drop_t5", False)
    offload = c.choice(d, "offload", "model.offload", D.OFFLOADS, D.OFFLOAD)
    text_tokens = c.integer(d, "text_tokens", "model.text_tokens", None, lo=1, hi=D.MAX_TEXT_TOKENS)
    preview_decoder = _preview_decoder(c, d, family, base)
    return Model(family, checkpoint, accelerator, drop_t5, offload, text_tokens, preview_decoder)


def _accelerator(c: Checker, value: object, family: str, base: Path) -> Accelerator:
    key = "model.accelerator"
    if isinstance(value, dict):
        d = c.section(value, key, ACCELERATOR_KEYS)
        lora = c.text(d, "lora", f"{key}.lora", None)
        if not lora:
            c.add(f"{key}.lora", "missing", hint="{lora: hub-id-or-path, weight: 1.0}")
        weight = c.number(d, "weight", f"{key}.weight", D.LORA_WEIGHT)
        weight_name = c.text(d, "weight_name", f"{key}.weight_name", None)
        scheduler = _lora_scheduler(c, d, family, lora)
        lora = _reference(c, lora, base, f"{key}.lora") if lora else lora
        return Accelerator("lora", lora, weight_name, weight, scheduler)
    if value == "none":
        return Accelerator("none")
    accelerators = registry.accelerators()
    if not isinstance(value, str) or value not in accelerators:
        names = (*accelerators, "none")
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "") + "choose one of " + ", ".join(names)
        c.add(key, f"unknown accelerator {value!r}", hint + ", or {lora: id-or-path, weight: 1.0}")
        return Accelerator("none")
    spec, owner = accelerators[value], registry.accelerator_family(value)
    if owner != family:
        fits = [*registry.family(family).accelerators, "none"]
        c.add(key, f"{value} is an accelerator for {owner}, not {family}", hint="use " + " or ".join(fits))
    return Accelerator(value, spec.lora, spec.weight_name, D.LORA_WEIGHT, spec.scheduler)


def _lora_scheduler(c: Checker, d: dict, family: str, lora: str | None) -> str | None:
    """The scheduler a custom LoRA names; else that of the named accelerator with the same LoRA id;
    else None: the checkpoint's own scheduler."""
    key = "model.accelerator.scheduler"
    scheduler = c.choice(d, "scheduler", key, tuple(D.SCHEDULERS), None)
    spec = registry.family(family)
    if scheduler is None:
        same = [a.scheduler for a in spec.accelerators.values() if a.lora == lora]
        return same[0] if same else None
    if scheduler not in spec.schedulers:
        c.add(key, f"the {family} family cannot sample with {scheduler}", hint="choose " + " or ".join(spec.schedulers))
        return None
    return scheduler


def _reference(c: Checker, text: str, base: Path, key: str) -> str:
    """A hub id or preset name stays as it is; a local path becomes absolute against the scene's folder.

    A missing local path or a name that is neither is refused here; a hub id that cannot be fetched is a
    runtime failure (exit 1, with what to do), reported when the model loads.
    """
    if not text.strip():
        c.add(key, "is empty", hint="a hub id, a local folder or a .safetensors file")
        return text
    local = path_field(c, text, base, key, confine=False)
    if local is None:
        return text
    found = exists(local)
    if found or looks_local(text):
        if not found:
            what = "file" if text.endswith(D.WEIGHT_FILE_SUFFIXES) else "folder"
            c.add(key, f"{what} not found: {local}", hint=PATH_HINT)
        return str(local)
    _check_name(c, text, key)
    return text


def _check_name(c: Checker, text: str, key: str) -> None:
    """A name that is no path must be a preset (checkpoints) or a hub id, owner/name: a typo is refused
    here, before the loader spends a minute asking the hub for it."""
    presets = D.PRESET_NAMES if key == "model.checkpoint" else ()
    if text in presets or HUB_ID.fullmatch(text):
        return
    close = difflib.get_close_matches(text, presets, n=1)
    kinds = ("a preset (" + ", ".join(presets) + "), " if presets else "") + "a hub id (owner/name)"
    hint = (f"did you mean {close[0]!r}? " if close else "") + "a local folder is written ./name"
    c.add(key, f"{text!r} is neither {kinds} nor an existing path", hint=hint)


def _preview_decoder(c: Checker, d: dict, family: str, base: Path) -> str | None:
    """The decoder of `model.preview_decoder` (None: the full VAE); None with a problem added when refused."""
    value = d.get("preview_decoder")
    if value is None or value == "none":
        return None
    if not isinstance(value, str) or not value.strip():
        c.add(PREVIEW_KEY, f"expected {D.TINY_AE}, a folder or a hub id, got {describe(value)}", hint=PREVIEW_HINT)
        return None
    if registry.family(family).tiny_autoencoder is None:
        having = [name for name, spec in registry.families().items() if spec.tiny_autoencoder is not None]
        c.add(PREVIEW_KEY, f"the {family} family has no tiny autoencoder for its latents "
                           f"(there are for {', '.join(having)})", hint="remove it: previews then decode with the full VAE")
        return None
    if value == D.TINY_AE:
        return value
    local = path_field(c, value, base, PREVIEW_KEY, confine=False)
    if local is None:
        return None
    if exists(local):
        return str(local)
    if looks_local(value) or not HUB_ID.fullmatch(value):
        c.add(PREVIEW_KEY, f"{value!r} is neither {D.TINY_AE} nor an existing folder or a hub id", hint=PREVIEW_HINT)
        return None
    return value
