"""Reference pictures per region on FLUX.1 (families/flux_ip_adapter.py): the `tiny` preset IP-Adapter (XLabs'
layout, a random CLIP image encoder) loaded the real way, against FluxPipeline's own IP-Adapter path; per-item
embeds and weights within one call, where diffusers' FLUX IP-Adapter would act on the whole batch."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import flux, ip_adapter, presets, registry
from semanticdraw_cli.fusion import conditioning
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Model, Reference, Tile
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow
WEIGHT = 0.6
SCHNELL = registry.accelerators()["schnell"]
WHOLE = rect(0, 0, 1, 1, fractional=True)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A reference picture of another size than the canvas: noise, so the encoder sees something."""
    path = tmp_path_factory.mktemp("reference") / "look.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def plain_renderer():
    """A renderer whose transformer never loads an IP-Adapter: what "without a reference" computes."""
    return Renderer(device="cpu", dtype="float32")


def flux_scene(regions, guidance: float = 0.0):
    """One 128×96 window, schnell's 4 steps, no bootstrap, on the tiny preset."""
    scene = make_scene(128, 96, regions, steps=tuple(range(SCHNELL.grid)), grid=SCHNELL.grid, guidance=guidance,
                       bootstrap=Bootstrap(0, 1.0, 0.2), tile=Tile(1024, 512))
    return dataclasses.replace(scene, model=Model("flux", "tiny", Accelerator("schnell")))


def pipeline_latent(picture, scene, guidance: float) -> torch.Tensor:
    """FluxPipeline's clean latent with the `tiny` preset IP-Adapter at scale WEIGHT, its encoder in float32;
    guidance > 1 is its true CFG with an empty negative prompt and its black negative picture."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(presets.ensure_preset("flux", "tiny"))
    folder = ip_adapter.ensure_preset("flux", "tiny")
    pipe.load_ip_adapter(str(folder), weight_name=ip_adapter.WEIGHTS_FILE,
                         image_encoder_pretrained_model_name_or_path=str(folder / "image_encoder"),
                         image_encoder_dtype=torch.float32)
    pipe.set_ip_adapter_scale(WEIGHT)
    pipe.set_progress_bar_config(disable=True)
    cfg = {"true_cfg_scale": guidance, "negative_prompt": ""} if guidance > 1 else {}
    latents = pipe(
        scene.regions[0].prompt, ip_adapter_image=Image.open(picture).convert("RGB"), height=96, width=128,
        num_inference_steps=SCHNELL.grid, guidance_scale=0.0, max_sequence_length=flux.T5_TOKENS,
        generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent", **cfg,
    ).images
    return FluxPipeline._unpack_latents(latents, 96, 128, 8)[0]


@pytest.mark.parametrize("guidance", [0.0, 3.0])
def test_a_one_window_one_region_scene_with_the_tiny_adapter_samples_as_flux_pipeline(picture, renderer, guidance):
    """Loads diffusers' pipeline as the oracle; guidance 3 runs the black negative picture through the image
    branch of the unconditional half, as the pipeline does."""
    scene = flux_scene([region("a red apple", WHOLE, reference=Reference(picture, WEIGHT, "tiny"))], guidance)
    ours = renderer.render(scene)[0].latent
    torch.testing.assert_close(ours, pipeline_latent(picture, scene, guidance), atol=1e-4, rtol=1e-4)
    without = renderer.render(dataclasses.replace(scene, regions=(dataclasses.replace(scene.regions[0], reference=None),)))
    assert (ours - without[0].latent).abs().max() > 1e-2  # the reference changes the picture: the test can fail


def test_a_reference_acts_only_on_its_regions_items_in_a_call_that_mixes_them(picture, renderer, plain_renderer):
    """Two regions on one window in one call: the one without a reference predicts exactly what it predicts on
    a transformer that never loaded the adapter; the one with a reference predicts something else."""
    left, right = rect(0, 0, 0.5, 1, fractional=True), rect(0.5, 0, 0.5, 1, fractional=True)
    plain = flux_scene([region("a red apple", left), region("a blue sea", right)])
    mixed = dataclasses.replace(plain, regions=(
        plain.regions[0], dataclasses.replace(plain.regions[1], reference=Reference(picture, WEIGHT, "tiny"))))
    x0 = {}
    for name, scene, used in (("plain", plain, plain_renderer), ("mixed", mixed, renderer)):
        prepared = used.prepare(scene)
        setup = prepared.setup
        pairs = setup.plan[0]
        assert sorted(p.region for p in pairs) == [0, 1]  # both regions' items in the one call
        x = prepared.x.expand(len(pairs), -1, -1, -1)
        x0[name] = prepared.adapter.predict_x0(x, setup.table, 0, conditioning(setup, pairs))
    assert torch.equal(x0["mixed"][0], x0["plain"][0])
    assert (x0["mixed"][1] - x0["plain"][1]).abs().max() > 1e-3


def test_a_reference_of_weight_zero_renders_as_none_bit_for_bit(picture, renderer, plain_renderer, tmp_path):
    """Against a renderer that never loaded the adapter; a picture is encoded once per content."""
    Image.open(picture).save(own := tmp_path / "own.png")  # bytes no other test encoded
    apple = region("a red apple", WHOLE)
    weightless = flux_scene([dataclasses.replace(apple, reference=Reference(own, 0.0, "tiny"))])
    assert renderer.prepare(weightless).recomputed.get("reference") == 1
    assert "reference" not in renderer.prepare(dataclasses.replace(weightless, name="again")).recomputed
    ours = renderer.render(weightless)[0].latent
    assert torch.equal(ours, plain_renderer.render(flux_scene([apple]))[0].latent)


def test_an_adapter_of_another_family_fails_at_load_naming_it(picture, tmp_path):
    """sd15's tiny IP-Adapter saved as .bin (which the scene checks cannot read) on the flux model: exit 1."""
    source = ip_adapter.ensure_preset("sd15", "tiny")
    (tmp_path / "image_encoder").symlink_to(source / "image_encoder")
    from safetensors.torch import load_file

    nested = {"image_proj": {}, "ip_adapter": {}}
    for key, value in load_file(source / ip_adapter.WEIGHTS_FILE).items():
        part, name = key.split(".", 1)
        nested[part][name] = value
    torch.save(nested, unet_adapter := tmp_path / "sd15-ip-adapter.bin")
    scene = flux_scene([region("a red apple", WHOLE, reference=Reference(picture, WEIGHT, str(unet_adapter)))])
    with pytest.raises(RenderError, match="sd15-ip-adapter.bin"):
        Renderer(device="cpu", dtype="float32").prepare(scene)


@pytest.mark.parametrize(("lever", "order"), [("fuse_qkv", "lever first"), ("fuse_qkv", "reference first"),
                                              ("compile", "lever first")])
def test_a_reference_acts_with_fused_projections_and_compiled_whichever_comes_first(picture, renderer, monkeypatch,
                                                                                    lever, order):
    """As `watch` re-prepares an edited scene on one renderer. FLUX.1's IP-Adapter processors read the fused
    projections themselves (the adapter stays loaded through fusing), so the picture is the unfused one; compile
    uses dynamo's `eager` backend (the trace alone)."""
    from torch._dynamo.utils import counters

    from semanticdraw_cli import defaults

    monkeypatch.setattr(defaults, "COMPILE_BACKEND", "eager")
    apple = region("a red apple", WHOLE)
    referenced = dataclasses.replace(apple, reference=Reference(picture, WEIGHT, "tiny"))
    plain, eager = (renderer.render(flux_scene([r]))[0].latent for r in (apple, referenced))
    fresh = Renderer(device="cpu", dtype="float32")
    first = flux_scene([referenced if order == "reference first" else apple])
    fresh.render(dataclasses.replace(first, sampler=dataclasses.replace(first.sampler, **{lever: order == "lever first"})))
    scene = flux_scene([referenced])
    graphs = counters["stats"]["unique_graphs"]
    both = fresh.render(dataclasses.replace(scene, sampler=dataclasses.replace(scene.sampler, **{lever: True})))[0]
    if lever == "compile":  # the per-item weight is a plain tensor on FLUX.1's processors: nothing breaks the graph
        assert counters["stats"]["unique_graphs"] - graphs == 1
    adapter, _ = fresh.adapter(scene)
    if lever == "fuse_qkv":
        fused = [m.fused_projections for m in adapter.network.modules() if hasattr(m, "fused_projections")]
        assert fused and all(fused)
    torch.testing.assert_close(both.latent, eager, atol=1e-4, rtol=1e-4)
    assert (both.latent - plain).abs().max() > 1e-2  # the reference acts
    torch.testing.assert_close(fresh.render(scene)[0].latent, eager, atol=1e-4, rtol=1e-4)  # the lever off again
