"""Loading a family's diffusers pipeline: from a preset, hub id, folder or file, with its accelerator LoRA fused.

Every family loads through `load_family_pipeline`, so a checkpoint of another family, a missing
model and a LoRA that does not fit end in the same clear errors whatever the family.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families.hub import load_error, readable_source
from semanticdraw_cli.lazy import lazy_module
from semanticdraw_cli.scene.types import Accelerator

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


def quiet_libraries() -> None:
    """Silence diffusers/transformers chatter (loading bars, benign LoRA notes); we report progress ourselves."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is first imported
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def checkpoint_config(source: str) -> dict | None:
    """model_index.json of a diffusers folder or cached hub id; None when there is none to read."""
    from diffusers import DiffusionPipeline

    try:
        return dict(DiffusionPipeline.load_config(source))
    except Exception:  # not a diffusers folder, not cached offline: the loader reports it properly
        return None


def is_single_file(checkpoint: str) -> bool:
    """One weights file (not a diffusers folder or hub repo), by its name."""
    return checkpoint.endswith(defaults.CHECKPOINT_FILE_SUFFIXES)


def refuse_other_family(target: str, family: str, source: str | None = None) -> dict | None:
    """The model_index.json at `target` (None when unreadable); RenderError when it holds another family."""
    from semanticdraw_cli.families.registry import families_of_pipeline

    config = checkpoint_config(target)
    name = config.get("_class_name") if config else None
    if config and name is not None and not isinstance(name, str):
        raise RenderError(
            f"{source or target}: model_index.json has _class_name {str(name)[:60]}, not a pipeline class name\n"
            "what to do: point to a diffusers folder whose model_index.json names its pipeline, e.g. "
            '"_class_name": "StableDiffusionPipeline"'
        )
    found = families_of_pipeline(config) if config else ()
    if found and family not in found:
        also = f" (or {', '.join(found[1:])})" if len(found) > 1 else ""
        raise RenderError(
            f"{source or target!r} is a checkpoint of the {found[0]} family{also}, but model.family is {family}; "
            f"set model.family: {found[0]}"
        )
    return config


def load_family_pipeline(
    pipeline_class, model, family: str, dtype: torch.dtype, require=None, device: torch.device | None = None, **kwargs
):
    """(pipeline, preset folder or None) from a preset, hub id, local folder or one .safetensors file.

    A diffusers folder of another family, or one without a component named in `require` (name -> what
    to do), is refused before any weight is read. Presets of `FamilySpec.device_presets` are built on `device`.
    """
    from semanticdraw_cli.families import presets
    from semanticdraw_cli.families.registry import family as family_spec

    quiet_libraries()
    source = model.checkpoint
    if source in family_spec(family).device_presets:
        return presets.pipeline_on_device(family_spec(family), pipeline_class, source, device, dtype, **kwargs), None
    preset_dir = presets.ensure_preset(family, source) if presets.is_preset(source) else None
    target = str(preset_dir or source)
    single_file = is_single_file(source)
    if preset_dir is None and not single_file:
        try:
            target = readable_source(source)
        except FileNotFoundError as error:
            raise load_error("model", source, error) from error
    config = None if single_file else refuse_other_family(target, family, source)
    for component, hint in (require or {}).items():
        entry = config.get(component) if config else None
        if config and not (isinstance(entry, list) and entry and entry[0] is not None):
            raise RenderError(f"{source!r} has no {component}\nwhat to do: {hint}")
    try:
        if single_file:
            if not Path(source).is_file():
                raise FileNotFoundError(f"no such file: {source}")
            pipe = pipeline_class.from_single_file(source, dtype=dtype, **kwargs)
        else:
            pipe = pipeline_class.from_pretrained(target, dtype=dtype, **kwargs)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        raise load_error("model", source, error) from error
    return pipe, preset_dir


def resolve_lora(accelerator: Accelerator, preset_dir: Path | None) -> tuple[str, str | None] | None:
    """(source, weight_name) of the accelerator LoRA; presets carry their own random-weight copy."""
    if accelerator.name == "none" or accelerator.lora is None:
        return None
    if preset_dir is not None and accelerator.name != "lora":
        local = preset_dir / "accelerators" / accelerator.name
        if not local.is_dir():
            raise RenderError(f"the preset at {preset_dir} has no {accelerator.name!r} accelerator")
        return str(local), None
    return accelerator.lora, accelerator.weight_name


def read_peft_adapter(source: str, component: str) -> dict[str, torch.Tensor] | None:
    """A PEFT adapter (adapter_config.json + adapter_model.safetensors, e.g. jasperai/flash-sd3) as a
    diffusers LoRA state dict for the pipeline's `component`, lora_alpha/r folded into lora_B; None when
    `source` is not one (or, offline, not cached: the ordinary loader then says what is missing)."""
    import json

    from safetensors.torch import load_file

    folder = Path(source)
    try:
        if folder.is_dir():
            config_file, weights_file = folder / "adapter_config.json", folder / "adapter_model.safetensors"
            if not config_file.is_file():
                return None
        elif not folder.exists() and source.count("/") == 1:  # a hub id
            from huggingface_hub import hf_hub_download

            config_file = Path(hf_hub_download(source, "adapter_config.json"))
            weights_file = Path(hf_hub_download(source, "adapter_model.safetensors"))
        else:
            return None
    except Exception:  # not a PEFT repo, or not reachable
        return None
    config = json.loads(config_file.read_text())
    rank, alpha = config.get("r", 1), config.get("lora_alpha", config.get("r", 1))
    scale = alpha / rank**0.5 if config.get("use_rslora") else alpha / rank
    state = {}
    for key, value in load_file(weights_file).items():
        key = component + "." + key.removeprefix("base_model.model.")
        state[key] = value * scale if ".lora_B." in key else value
    return state


def fuse_accelerator(
    pipe, accelerator: Accelerator, preset_dir: Path | None, family: str, component: str | None = None
) -> None:
    """Load the accelerator LoRA, fuse it into the weights (no LoRA cost per step), drop the adapter.

    With `component` (the pipeline part it adapts), a LoRA saved in PEFT's own format is read too.
    """
    lora = None if getattr(pipe, "built_on_device", False) else resolve_lora(accelerator, preset_dir)
    if lora is None:
        return
    source, weight_name = lora
    try:
        local = readable_source(source)
    except FileNotFoundError as error:
        raise load_error("accelerator LoRA", source, error, weight_name) from error
    kwargs = {"weight_name": weight_name} if weight_name else {}
    peft_state = read_peft_adapter(local, component) if component and not weight_name else None
    try:
        pipe.load_lora_weights(peft_state if peft_state is not None else local, adapter_name="accelerator", **kwargs)
    except (OSError, pickle.UnpicklingError) as error:
        raise load_error("accelerator LoRA", source, error, weight_name) from error
    except (ValueError, KeyError, RuntimeError) as error:
        raise RenderError(
            f"the LoRA {source!r} does not fit a {family} model: {str(error).splitlines()[0]}\n"
            f"what to do: use a LoRA trained for {family}, or set model.accelerator to one made for it"
        ) from error
    adapters = {name for names in pipe.get_list_adapters().values() for name in names}
    if "accelerator" not in adapters:  # no key of the LoRA matched a module of this model
        raise RenderError(
            f"the LoRA {source!r} does not fit a {family} model: none of its weights match the model's layers\n"
            f"what to do: use a LoRA trained for {family}, or set model.accelerator to one made for it"
        )
    pipe.fuse_lora(lora_scale=accelerator.weight, adapter_names=["accelerator"])
    pipe.unload_lora_weights()


def place(pipe, offload: str, device: torch.device) -> None:
    """The pipeline's networks on `device`, or (model.offload) kept in CPU memory and moved in as diffusers does it.

    `model` moves each whole network to the GPU when it runs (peak: the largest network); `sequential` moves
    one layer at a time (peak: about one layer, much slower). The VAE stays on the GPU under `sequential`,
    so its float32 upcast can convert it.
    """
    if offload == "none":
        pipe.to(device)
        return
    if device.type != "cuda":
        raise RenderError(
            f"model.offload: {offload} moves weights between CPU memory and a CUDA GPU, but the device is "
            f"{device.type}\nwhat to do: remove model.offload (on {device.type} the model already lives in main memory)"
        )
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe._exclude_from_cpu_offload = [*pipe._exclude_from_cpu_offload, "vae"]
        pipe.enable_sequential_cpu_offload(device=device)
