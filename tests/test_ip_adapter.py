"""Reference pictures per region (families/ip_adapter.py): a tiny random IP-Adapter and image encoder, saved
and loaded the real way, against diffusers' own IP-Adapter pipeline path; per-item weights within one call."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from semanticdraw_cli.families import ip_adapter, presets, registry
from semanticdraw_cli.fusion import conditioning
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Model, Reference
from scene_factory import make_scene, rect, region

WEIGHT = 0.6


@pytest.fixture(scope="module")
def adapter_file(tmp_path_factory):
    """A random IP-Adapter for the tiny sd15 UNet, with its image encoder beside it."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(presets.ensure_preset("sd15", "tiny"), subfolder="unet")
    return ip_adapter.build_random_adapter(unet, tmp_path_factory.mktemp("ip-adapter"))


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A reference picture of another size than the canvas: noise, so the encoder sees something."""
    path = tmp_path_factory.mktemp("reference") / "look.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def renderer():
    """One renderer for the module: the tiny model loads once (the mixed-call test takes its own)."""
    return Renderer(device="cpu", dtype="float32")


def ddim_scene(regions, guidance: float = 7.5):
    """One window (the canvas is smaller than a tile), DDIM over 4 steps, no bootstrap, no accelerator."""
    scene = make_scene(128, 96, regions, steps=tuple(range(4)), grid=4, guidance=guidance,
                       bootstrap=Bootstrap(0, 1.0, 0.2))
    return dataclasses.replace(scene, model=Model("sd15", str(presets.ensure_preset("sd15", "tiny")), Accelerator("none")))


def pipeline_latent(adapter_file, picture, scene) -> torch.Tensor:
    """The clean latent of diffusers' StableDiffusionPipeline with the same IP-Adapter at scale WEIGHT."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(scene.model.checkpoint, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.load_ip_adapter(str(adapter_file.parent), subfolder="", weight_name=adapter_file.name,
                         image_encoder_folder="image_encoder")
    pipe.set_ip_adapter_scale(WEIGHT)
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        scene.regions[0].prompt, ip_adapter_image=Image.open(picture).convert("RGB"), height=96, width=128,
        num_inference_steps=4, guidance_scale=scene.sampler.guidance,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent",
    ).images[0]


def test_a_one_window_one_region_scene_with_a_reference_samples_as_diffusers_ip_adapter_pipeline(
    adapter_file, picture, renderer
):
    """Loads diffusers' pipeline as the oracle (about 3 s of CPU here)."""
    reference = Reference(picture, WEIGHT, str(adapter_file))
    scene = ddim_scene([region("a red apple", rect(0, 0, 1, 1, fractional=True), reference=reference)])
    ours = renderer.render(scene)[0].latent
    theirs = pipeline_latent(adapter_file, picture, scene)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    without = renderer.render(dataclasses.replace(scene, regions=(dataclasses.replace(scene.regions[0], reference=None),)))
    assert (ours - without[0].latent).abs().max() > 1e-2  # the reference changes the picture: the test can fail


def test_items_without_a_reference_are_bit_equal_in_a_call_that_mixes_them(adapter_file, picture):
    """Two regions on one window in one call: the one without a reference predicts exactly what it predicts
    on a network that never loaded the adapter; the one with a reference predicts something else. A fresh
    renderer, so that the plain call runs before the adapter loads."""
    left, right = rect(0, 0, 0.5, 1, fractional=True), rect(0.5, 0, 0.5, 1, fractional=True)
    plain = ddim_scene([region("a red apple", left), region("a blue sea", right)])
    with_reference = dataclasses.replace(plain, regions=(
        plain.regions[0], dataclasses.replace(plain.regions[1], reference=Reference(picture, WEIGHT, str(adapter_file)))))
    x0 = {}
    for name, scene in (("plain", plain), ("mixed", with_reference)):
        prepared = Renderer(device="cpu", dtype="float32").prepare(scene)
        setup = prepared.setup
        pairs = setup.plan[0]
        assert sorted(p.region for p in pairs) == [0, 1]  # both regions' items in the one call
        x = prepared.x.expand(len(pairs), -1, -1, -1)
        x0[name] = prepared.adapter.predict_x0(x, setup.table, 0, conditioning(setup, pairs))
    assert torch.equal(x0["mixed"][0], x0["plain"][0])
    assert (x0["mixed"][1] - x0["plain"][1]).abs().max() > 1e-3


def test_a_reference_of_weight_zero_changes_nothing_bit_for_bit(adapter_file, picture, renderer):
    apple = region("a red apple", rect(0, 0, 1, 1, fractional=True))
    scene = ddim_scene([apple])
    weightless = ddim_scene([dataclasses.replace(apple, reference=Reference(picture, 0.0, str(adapter_file)))])
    assert torch.equal(renderer.render(weightless)[0].latent, renderer.render(scene)[0].latent)


def test_the_picture_is_encoded_once_per_content(adapter_file, tmp_path, renderer):
    picture = tmp_path / "own.png"
    Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(picture)
    reference = Reference(picture, WEIGHT, str(adapter_file))
    scene = ddim_scene([region("a red apple", rect(0, 0, 1, 1, fractional=True), reference=reference)])
    assert renderer.prepare(scene).recomputed.get("reference") == 1
    assert "reference" not in renderer.prepare(dataclasses.replace(scene, name="again")).recomputed
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(edited := tmp_path / "edited.png")
    edited_region = dataclasses.replace(scene.regions[0], reference=dataclasses.replace(reference, image=edited))
    edited_scene = dataclasses.replace(scene, regions=(edited_region,))
    recomputed = renderer.prepare(edited_scene).recomputed
    assert recomputed.get("reference") == 1 and "text" not in recomputed


@pytest.mark.slow
def test_sdxl_with_a_reference_samples_as_diffusers_sdxl_ip_adapter_pipeline(tmp_path, picture):
    """SDXL's UNet takes the picture beside its size conditioning; guidance 3 runs the zero negative picture
    through the image branch as the pipeline does. Loads diffusers' SDXL pipeline as the oracle."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    folder = presets.ensure_preset("sdxl", "tiny")
    adapter = ip_adapter.build_random_adapter(UNet2DConditionModel.from_pretrained(folder, subfolder="unet"), tmp_path)
    spec = registry.accelerators()["hyper"]
    scene = make_scene(128, 96, [region("a red apple", rect(0, 0, 1, 1, fractional=True),
                                        reference=Reference(picture, WEIGHT, str(adapter)))],
                       steps=tuple(range(spec.grid)), grid=spec.grid, guidance=3.0, bootstrap=Bootstrap(0, 1.0, 0.2))
    scene = dataclasses.replace(scene, model=Model("sdxl", "tiny", Accelerator("hyper", spec.lora, spec.weight_name, 1.0)))
    ours = Renderer(device="cpu", dtype="float32").render(scene)[0].latent
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.load_lora_weights(folder / "accelerators" / "hyper", adapter_name="accelerator")
    pipe.fuse_lora(lora_scale=1.0, adapter_names=["accelerator"])
    pipe.unload_lora_weights()
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.load_ip_adapter(str(tmp_path), subfolder="", weight_name=adapter.name, image_encoder_folder="image_encoder")
    pipe.set_ip_adapter_scale(WEIGHT)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        "a red apple", ip_adapter_image=Image.open(picture).convert("RGB"), height=96, width=128,
        num_inference_steps=spec.grid, guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent",
    ).images[0]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_an_adapter_that_does_not_fit_the_unet_fails_at_load_naming_it(adapter_file, picture, tmp_path):
    """A .bin adapter (its width unread by the scene checks) made for a wider UNet: exit 1 naming the file."""
    from safetensors.torch import load_file

    from semanticdraw_cli.errors import RenderError

    (tmp_path / "image_encoder").symlink_to(adapter_file.parent / "image_encoder")
    weights = load_file(adapter_file)
    nested = {"image_proj": {}, "ip_adapter": {}}
    for key, value in weights.items():
        part, name = key.split(".", 1)
        nested[part][name] = torch.cat([value, value], dim=-1) if part == "ip_adapter" else value
    torch.save(nested, wide := tmp_path / "wide-ip-adapter.bin")
    reference = Reference(picture, WEIGHT, str(wide))
    scene = ddim_scene([region("a red apple", rect(0, 0, 1, 1, fractional=True), reference=reference)])
    with pytest.raises(RenderError, match="wide-ip-adapter.bin"):
        Renderer(device="cpu", dtype="float32").prepare(scene)


def test_an_adapter_that_fails_to_load_leaves_none_attached(tmp_path):
    """Replacing an attached adapter unloads it first: when the new one cannot load, the adapter must not still
    name the old one (a later render with it would skip loading and run without it)."""
    from types import SimpleNamespace

    from semanticdraw_cli.errors import RenderError
    from semanticdraw_cli.families import ip_adapter

    def load_ip_adapter(*args, **kwargs):
        raise OSError("no such file")  # what diffusers raises for a missing weights file

    unloaded = []
    pipe = SimpleNamespace(unload_ip_adapter=lambda: unloaded.append(True), load_ip_adapter=load_ip_adapter)
    adapter = SimpleNamespace(pipe=pipe, model=SimpleNamespace(family="sd15", offload="none"), ip_adapter="old", ip_processors=["p"],
                              dtype=None)
    with pytest.raises(RenderError):
        ip_adapter.attach(adapter, str(tmp_path / "missing.safetensors"))
    assert unloaded == [True] and adapter.ip_adapter is None and adapter.ip_processors is None


def lever_scene(picture, reference: bool, **levers):
    """The tiny sd15 preset with its `tiny` adapter: an apple over the whole canvas, with or without the picture."""
    apple = region("a red apple", rect(0, 0, 1, 1, fractional=True),
                   reference=Reference(picture, WEIGHT, "tiny") if reference else None)
    return make_scene(128, 96, [apple], bootstrap=Bootstrap(0, 1.0, 0.2), **levers)


@pytest.fixture(scope="module")
def without_levers(picture, renderer):
    """(no reference, the reference) rendered eager, unfused, contiguous."""
    return tuple(renderer.render(lever_scene(picture, reference))[0].latent for reference in (False, True))


def processor_kinds(adapter) -> set[str]:
    return {type(p).__name__ for p in adapter.network.attn_processors.values()}


@pytest.mark.parametrize(("lever", "order"), [
    ("fuse_qkv", "lever first"), ("fuse_qkv", "reference first"), ("compile", "lever first"),
    ("compile", "reference first"), ("channels_last", "reference first"),
])
def test_a_reference_acts_with_each_speed_lever_whichever_comes_first(picture, without_levers, monkeypatch, lever, order):
    """As `watch` re-prepares an edited scene on one renderer: a lever on before the adapter loads, or turned on
    while it is loaded, then off again. The reference must act (not the picture without it) and give the picture
    without the lever. diffusers' QKV fusion swaps every attention processor: unhandled, the adapter's were
    dropped (a crash on the UNet's image tokens). compile uses dynamo's `eager` backend: the trace alone, where
    what the adapter changes lives (seconds where aot_eager takes half a minute)."""
    from semanticdraw_cli import defaults

    monkeypatch.setattr(defaults, "COMPILE_BACKEND", "eager")
    plain, referenced = without_levers
    renderer = Renderer(device="cpu", dtype="float32")
    first = lever_scene(picture, order == "reference first", **({lever: True} if order == "lever first" else {}))
    renderer.render(first)
    both = renderer.render(lever_scene(picture, True, **{lever: True}))[0]
    assert both.report["network"][lever] in (True, "default")
    if lever == "compile":  # compiled for the adapter's inputs before the steps (lever first: again), not in them
        assert both.report["seconds"]["compile"] > 0
    torch.testing.assert_close(both.latent, referenced, atol=1e-4, rtol=1e-4)
    assert (both.latent - plain).abs().max() > 1e-2  # the reference acts
    adapter, _ = renderer.adapter(first)
    if lever == "fuse_qkv":  # self-attention fused, cross-attention the adapter's
        assert processor_kinds(adapter) == {"FusedAttnProcessor2_0", "IPAdapterAttnProcessor2_0"}
    torch.testing.assert_close(renderer.render(lever_scene(picture, True))[0].latent, referenced, atol=1e-4, rtol=1e-4)
    assert processor_kinds(adapter) == {"AttnProcessor2_0", "IPAdapterAttnProcessor2_0"}
    unreferenced = renderer.render(lever_scene(picture, False, **{lever: True}))[0].latent  # the adapter stays loaded
    torch.testing.assert_close(unreferenced, plain, atol=1e-4, rtol=1e-4)


def test_under_model_offload_the_image_encoder_joins_the_offloaded_networks(picture, without_levers, monkeypatch):
    """`loading.place` refuses model.offload off CUDA; diffusers' model offload itself runs with the CPU as its
    execution device, enough to see the adapter load with the hooks lifted and the image encoder hooked after, as
    the UNet is (an encoder loaded under the hooks stays unhooked, off the GPU the pictures go to). The GPU run is
    benchmarks/gpu_smoke.py's `reference-offload`."""
    from semanticdraw_cli.families import loading

    def place_on_cpu(pipe, offload, device):
        pipe.enable_model_cpu_offload(device=device) if offload == "model" else pipe.to(device)

    monkeypatch.setattr(loading, "place", place_on_cpu)
    scene = lever_scene(picture, True)
    scene = dataclasses.replace(scene, model=dataclasses.replace(scene.model, offload="model"))
    renderer = Renderer(device="cpu", dtype="float32")
    latent = renderer.render(scene)[0].latent
    pipe = renderer.adapter(scene)[0].pipe
    assert hasattr(pipe.image_encoder, "_hf_hook") and hasattr(pipe.unet, "_hf_hook")
    torch.testing.assert_close(latent, without_levers[1], atol=1e-4, rtol=1e-4)

