"""ControlNets of the transformer families (sd3, flux) on their tiny presets: parity with diffusers' ControlNet
pipelines, the picture driving the latent, weight 0 is no control, crops cut from the canvas's latent, each item's
crop, a region's control reaching only its items, and a ControlNet of another family refused when it loads,
naming it."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from PIL import Image

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import controlnet, controlnet_dit, presets
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Control, Model, Tile
from family_checks import black_picture, check_control_crops, edges_picture, halves_picture, item_x0
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow
WIDTH, HEIGHT = 128, 96
ACCELERATOR = {"sd3": Accelerator("none"), "flux": Accelerator("schnell")}
PICTURE_MARGIN = 100 * 1e-4  # how much the picture must move the latent on average: 100 times the parity tolerance


@pytest.fixture(scope="module")
def renderer():
    return Renderer(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def edges(tmp_path_factory):
    return edges_picture(tmp_path_factory.mktemp("control") / "edges.png", WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def black(tmp_path_factory):
    return black_picture(tmp_path_factory.mktemp("control") / "black.png", WIDTH, HEIGHT)


@pytest.fixture
def vae_mean(monkeypatch):
    """diffusers' ControlNet pipelines draw the control latent from the VAE's distribution; ours is its mean."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mean)


@pytest.fixture(scope="module")
def pooled_controlnet(tmp_path_factory):
    """The tiny sd3 ControlNet as SD3.5's ship: it reads the pooled text, and the picture's latent with the shift."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("controlnet") / "pooled"
    shutil.copytree(controlnet_dit.ensure_preset("sd3", "tiny"), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "force_zeros_for_pooled_projection": False}))
    return folder


def one_region(family: str, control: tuple[Control, ...], steps: int = 4, guidance: float = 0.0, **sampler):
    scene = make_scene(WIDTH, HEIGHT, [region("a red apple", rect(0, 0, 1, 1, fractional=True))],
                       steps=tuple(range(steps)), grid=steps, guidance=guidance, bootstrap=Bootstrap(0, 1.0, 0.2),
                       tile=Tile(768, 384), **sampler)
    return dataclasses.replace(scene, model=Model(family, "tiny", ACCELERATOR[family]), control=control)


@pytest.mark.parametrize("pooled", [False, True])
def test_sd3_with_a_controlnet_equals_diffusers_controlnet_pipeline(renderer, edges, black, vae_mean,
                                                                    pooled_controlnet, pooled):
    """One window, one region, flow Euler over 4 steps at guidance 3: both branches run the ControlNet. InstantX's
    kind (the preset) zeroes its pooled input and reads the picture's latent without the VAE's shift; SD3.5's
    reads both, as the pipeline does."""
    from diffusers import SD3ControlNetModel, StableDiffusion3ControlNetPipeline

    folder = pooled_controlnet if pooled else controlnet_dit.ensure_preset("sd3", "tiny")
    reference = str(folder) if pooled else "tiny"
    scene = one_region("sd3", (Control(reference, edges, weight=0.8, start=0.0, end=0.75),), guidance=3.0)
    ours = renderer.render(scene)[0].latent
    net = SD3ControlNetModel.from_pretrained(folder)
    assert net.config.force_zeros_for_pooled_projection != pooled
    pipe = StableDiffusion3ControlNetPipeline.from_pretrained(presets.ensure_preset("sd3", "tiny"), controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe("a red apple", control_image=Image.open(edges), height=HEIGHT, width=WIDTH, num_inference_steps=4,
                  guidance_scale=3.0, controlnet_conditioning_scale=0.8, control_guidance_start=0.0,
                  control_guidance_end=0.75, generator=torch.Generator("cpu").manual_seed(scene.sampler.seed),
                  output_type="latent").images[0]
    blank_scene = one_region("sd3", (Control(reference, black, weight=0.8, start=0.0, end=0.75),), guidance=3.0)
    blank = renderer.render(blank_scene)[0].latent
    assert (ours - blank).abs().mean() > PICTURE_MARGIN  # the picture, not only the ControlNet, moved the latent
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_flux_with_a_controlnet_equals_diffusers_controlnet_pipeline(renderer, edges, black, vae_mean):
    """Schnell layout over 4 steps: the ControlNet reads the packed crop of the shifted, scaled latent and the
    transformer's inputs, and its block and single-block samples reach the transformer."""
    from diffusers import FluxControlNetModel, FluxControlNetPipeline, FluxPipeline

    scene = one_region("flux", (Control("tiny", edges, weight=1.3, start=0.25),))
    ours = renderer.render(scene)[0].latent
    net = FluxControlNetModel.from_pretrained(controlnet_dit.ensure_preset("flux", "tiny"))
    pipe = FluxControlNetPipeline.from_pretrained(presets.ensure_preset("flux", "tiny"), controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe("a red apple", control_image=Image.open(edges), height=HEIGHT, width=WIDTH, num_inference_steps=4,
                  guidance_scale=0.0, controlnet_conditioning_scale=1.3, control_guidance_start=0.25,
                  generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent").images
    blank = renderer.render(one_region("flux", (Control("tiny", black, weight=1.3, start=0.25),)))[0].latent
    assert (ours - blank).abs().mean() > PICTURE_MARGIN
    torch.testing.assert_close(ours, FluxPipeline._unpack_latents(theirs, HEIGHT, WIDTH, 8)[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_weight_zero_is_no_control_bit_for_bit(renderer, edges, family):
    plain = renderer.render(one_region(family, (), steps=1))[0].latent
    zero = renderer.render(one_region(family, (Control("tiny", edges, weight=0.0),), steps=1))[0].latent
    full = renderer.render(one_region(family, (Control("tiny", edges, weight=1.0),), steps=1))[0].latent
    assert torch.equal(plain, zero)
    assert not torch.equal(plain, full)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_two_controlnets_at_equal_weights_add_like_one_at_twice_the_weight(renderer, edges, family):
    """The call's ControlNets' residuals are summed: the same ControlNet twice at 0.5 is it once at 1.0."""
    twice = one_region(family, (Control("tiny", edges, weight=0.5), Control("tiny", edges, weight=0.5)), steps=1)
    once = one_region(family, (Control("tiny", edges, weight=1.0),), steps=1)
    torch.testing.assert_close(renderer.render(twice)[0].latent, renderer.render(once)[0].latent, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family, shift", [("sd3", 0.0), ("flux", 0.1159)])
def test_crops_are_cut_from_the_canvas_latent_encoded_once(renderer, edges, family, shift):
    """The source is the whole canvas's latent (sd3's InstantX-style ControlNet without the VAE's shift), one
    latent pixel per crop unit, so a window's crop is the latent under the window."""
    prepared = renderer.prepare(one_region(family, (Control("tiny", edges),), steps=1))
    adapter, setup = prepared.adapter, prepared.setup.controls
    pixels = np.array(Image.open(edges).convert("RGB"))
    codec = dataclasses.replace(adapter.codec, shift=shift)
    assert adapter.codec.shift == pytest.approx(0.0609 if family == "sd3" else shift)
    assert setup.factor == 1 and setup.pictures[0].shape == (16, HEIGHT // 8, WIDTH // 8)
    torch.testing.assert_close(setup.pictures[0], codec.encode(pixels)[0], atol=0, rtol=0)


@pytest.mark.parametrize("family, shift", [("sd3", 0.0), ("flux", 0.1159)])
def test_each_item_reads_its_own_windows_crop_of_the_latent(renderer, tmp_path, family, shift):
    """Two windows over a picture whose halves differ, one step: each item's ControlNet input is the canvas
    picture's latent under its window, and the other half's would move its x0."""
    path = halves_picture(tmp_path / "halves.png", 128, 64)
    pixels = np.array(Image.open(path).convert("RGB"))

    @functools.cache
    def canvas_latent(adapter):
        return dataclasses.replace(adapter.codec, shift=shift).encode(pixels)[0]  # (16, h, w)

    def crop(adapter, window):
        return canvas_latent(adapter)[(slice(None), *window.slices)]

    scene = make_scene(128, 64, [region("a red apple", rect(0, 0, 1, 1, fractional=True))], steps=(0,), grid=2,
                       guidance=1.0, bootstrap=Bootstrap(0, 1.0, 0.2), tile=Tile(64, 64), max_batch=1)
    scene = dataclasses.replace(scene, model=Model(family, "tiny", ACCELERATOR[family]),
                                control=(Control("tiny", path),))
    check_control_crops(renderer, scene, crop)


def with_prompt(scene, prompt: str):
    return dataclasses.replace(scene, regions=(dataclasses.replace(scene.regions[0], prompt=prompt),))


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_prompt_edit_keeps_the_control_latent_and_a_picture_edit_encodes_it_again(renderer, tmp_path, family):
    """What `watch` relies on: the picture's VAE encode is cached by its bytes; a new prompt re-encodes only the text,
    a saved picture is encoded again."""
    path = edges_picture(tmp_path / "edges.png", WIDTH, HEIGHT)
    scene = one_region(family, (Control("tiny", path),), steps=1)
    first = renderer.prepare(scene)
    assert first.recomputed["control_source"] == 1
    edited = renderer.prepare(with_prompt(scene, f"a green pear {family}"))
    assert edited.recomputed == {"text": 1}
    assert torch.equal(edited.setup.controls.pictures[0], first.setup.controls.pictures[0])
    halves_picture(path, WIDTH, HEIGHT)
    saved = renderer.prepare(scene)
    assert saved.recomputed == {"control": 1, "control_source": 1}
    assert not torch.equal(saved.setup.controls.pictures[0], first.setup.controls.pictures[0])


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_layers_control_latent_is_cached_by_its_pixels(renderer, edges, family):
    """A drawing's `control` layer (pixels, no file): the same pixels are encoded once, as the file would be;
    other pixels are encoded again."""
    pixels = np.array(Image.open(edges).convert("RGB"))
    from_file = renderer.prepare(one_region(family, (Control("tiny", edges),), steps=1)).setup.controls.pictures[0]
    scene = one_region(family, (Control("tiny", None, image_array=pixels.copy()),), steps=1)
    first = renderer.prepare(with_prompt(scene, f"a layer's apple {family}"))
    assert first.recomputed["control_source"] == 1
    assert torch.equal(first.setup.controls.pictures[0], from_file)
    edited = renderer.prepare(with_prompt(scene, f"a layer's pear {family}"))
    assert "control_source" not in edited.recomputed and edited.recomputed["text"] == 1
    assert torch.equal(edited.setup.controls.pictures[0], from_file)
    painted = one_region(family, (Control("tiny", None, image_array=255 - pixels),), steps=1)
    assert renderer.prepare(painted).recomputed["control_source"] == 1


def test_a_control_latent_is_never_served_to_another_model_or_controlnet(renderer, tmp_path, pooled_controlnet):
    """One picture under sd3's preset ControlNet (no VAE shift), SD3.5's kind (with it) and flux's: each its own
    encode, equal to its own codec's latent of the picture."""
    path = edges_picture(tmp_path / "edges.png", WIDTH, HEIGHT)
    pixels = np.array(Image.open(path).convert("RGB"))
    for family, reference, shift in [("sd3", "tiny", 0.0), ("sd3", str(pooled_controlnet), None),
                                     ("flux", "tiny", None)]:
        prepared = renderer.prepare(one_region(family, (Control(reference, path),), steps=1))
        assert prepared.recomputed["control_source"] == 1, (family, reference)
        codec = prepared.adapter.codec if shift is None else dataclasses.replace(prepared.adapter.codec, shift=shift)
        torch.testing.assert_close(prepared.setup.controls.pictures[0], codec.encode(pixels)[0], atol=0, rtol=0)


def test_a_regions_control_changes_only_that_regions_items(renderer, edges):
    """SD3, two regions over three windows, one item per call, a bootstrap step (crops rolled with the latent):
    with a ControlNet on the right region, the left region's first-step items are bit-equal, the right's differ."""
    regions = [region("a red apple", rect(0, 0, 64, 96)), region("a green pear", rect(64, 0, 64, 96))]
    scene = make_scene(WIDTH, HEIGHT, regions, steps=(0,), grid=2, guidance=1.0, bootstrap=Bootstrap(1, 1.0, 0.2),
                       tile=Tile(96, 16), max_batch=1)
    scene = dataclasses.replace(scene, model=Model("sd3", "tiny", Accelerator("none")))
    controlled = dataclasses.replace(scene, regions=(regions[0], dataclasses.replace(regions[1], control=(
        Control("tiny", edges),))))
    plain, with_control = item_x0(renderer, scene), item_x0(renderer, controlled)
    assert plain.keys() == with_control.keys()
    assert len({key[1] for key in plain}) >= 2
    first = [key for key in plain if key[0] == 0]
    assert {key[2] for key in first} == {0, 1}
    for key in first:
        assert torch.equal(plain[key], with_control[key]) == (key[2] == 0), key


@pytest.mark.parametrize("family, other, kind", [
    ("sd3", ("flux", controlnet_dit.ensure_preset), "FluxControlNetModel"),
    ("flux", ("sd15", controlnet.ensure_preset), "ControlNetModel"),
])
def test_a_controlnet_of_another_family_is_refused_naming_it(renderer, edges, family, other, kind):
    folder = str(other[1](other[0], "tiny"))
    with pytest.raises(RenderError, match=rf"ControlNet '.*{other[0]}-controlnet-tiny.*' is a {kind}, not a"):
        renderer.prepare(one_region(family, (Control(folder, edges),), steps=1))


@pytest.mark.parametrize("family, change, message", [
    ("sd3", {"num_attention_heads": 38}, r"made for another family \(num_attention_heads 38, the sd3 network.s is 2"),
    ("sd3", {"extra_conditioning_channels": 1}, r"an inpainting ControlNet"),
    ("flux", {"num_mode": 10}, r"a union ControlNet"),
    ("flux", {"conditioning_embedding_channels": 16}, r"a ControlNet that reads pixels"),
])
def test_a_controlnet_these_adapters_do_not_run_is_refused_before_its_weights_load(renderer, edges, tmp_path,
                                                                                   family, change, message):
    """A wider transformer's (SD3.5 large's heads), an inpainting, a union or an XLabs ControlNet: refused from
    its config, naming the folder (its weights, which would not fit the config, are never read)."""
    import json
    import shutil

    folder = tmp_path / "changed"
    shutil.copytree(controlnet_dit.ensure_preset(family, "tiny"), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(RenderError, match=rf"ControlNet '.*changed' is {message}"):
        renderer.prepare(one_region(family, (Control(str(folder), edges),), steps=1))


def test_render_with_another_familys_controlnet_exits_1_naming_it(edges, tmp_path):
    """Valid as a scene (a local folder that exists), refused when it loads: exit 1, the folder named, no traceback."""
    from typer.testing import CliRunner

    from semanticdraw_cli.cli.app import app

    folder = controlnet_dit.ensure_preset("sd3", "tiny")
    scene = tmp_path / "scene.yaml"
    scene.write_text(f"canvas: {{width: {WIDTH}, height: {HEIGHT}}}\nmodel: {{family: flux, checkpoint: tiny}}\n"
                     f"control: [{{model: {folder}, image: {edges}}}]\n"
                     "regions: [{prompt: a fox, mask: {rect: [0, 0, 64, 96]}}]\n")
    result = CliRunner().invoke(app, ["render", str(scene), "-o", str(tmp_path / "out"), "--quiet", "--allow-outside"])
    assert result.exit_code == 1, result.output
    assert "sd3-controlnet-tiny" in result.output and "not a FluxControlNetModel" in result.output
    assert "Traceback" not in result.output
