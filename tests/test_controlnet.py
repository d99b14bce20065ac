"""ControlNets of the UNet families on their tiny presets: parity with diffusers' ControlNet pipelines, the picture
driving the latent, weight 0 is no control, each item's crop, and a ControlNet of another family refused when it
loads, naming it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import controlnet, presets
from semanticdraw_cli.render import Renderer
from semanticdraw_cli.scene.types import Accelerator, Bootstrap, Control, Model, Tile
from family_checks import black_picture, check_control_crops, edges_picture, halves_picture, item_x0
from scene_factory import make_scene, rect, region

pytestmark = pytest.mark.slow
WIDTH, HEIGHT = 128, 96
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


def one_region(family: str, control: tuple[Control, ...], steps: int = 4, guidance: float = 7.5, **sampler):
    scene = make_scene(WIDTH, HEIGHT, [region("a red apple", rect(0, 0, 1, 1, fractional=True))],
                       steps=tuple(range(steps)), grid=steps, guidance=guidance, bootstrap=Bootstrap(0, 1.0, 0.2),
                       tile=Tile(768, 384), **sampler)
    return dataclasses.replace(scene, model=Model(family, "tiny", Accelerator("none")), control=control)


def test_sd15_with_a_controlnet_equals_diffusers_controlnet_pipeline(renderer, edges, black):
    """One window, one region, DDIM over 4 steps at guidance 7.5: our calls with the ControlNet's residuals
    give the latent of StableDiffusionControlNetPipeline with the same ControlNet, picture and weight."""
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    scene = one_region("sd15", (Control("tiny", edges, weight=0.8, start=0.0, end=0.75),))
    ours = renderer.render(scene)[0].latent
    folder = presets.ensure_preset("sd15", "tiny")
    net = ControlNetModel.from_pretrained(controlnet.ensure_preset("sd15", "tiny"))
    pipe = StableDiffusionControlNetPipeline.from_pretrained(folder, controlnet=net, safety_checker=None,
                                                             requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe("a red apple", image=Image.open(edges), height=HEIGHT, width=WIDTH, num_inference_steps=4,
                  guidance_scale=7.5, controlnet_conditioning_scale=0.8, control_guidance_start=0.0,
                  control_guidance_end=0.75, generator=torch.Generator("cpu").manual_seed(scene.sampler.seed),
                  output_type="latent").images[0]
    blank = renderer.render(one_region("sd15", (Control("tiny", black, weight=0.8, start=0.0, end=0.75),)))[0].latent
    assert (ours - blank).abs().mean() > PICTURE_MARGIN  # the picture, not only the ControlNet, moved the latent
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_sdxl_with_a_controlnet_equals_diffusers_controlnet_pipeline(renderer, edges, black):
    """Euler trailing over 4 steps at guidance 3: the ControlNet reads the same size ids and pooled text as the UNet."""
    from diffusers import ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLControlNetPipeline

    scene = one_region("sdxl", (Control("tiny", edges, weight=1.3, start=0.25),), guidance=3.0)
    ours = renderer.render(scene)[0].latent
    net = ControlNetModel.from_pretrained(controlnet.ensure_preset("sdxl", "tiny"))
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(presets.ensure_preset("sdxl", "tiny"), controlnet=net)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe("a red apple", image=Image.open(edges), height=HEIGHT, width=WIDTH, num_inference_steps=4,
                  guidance_scale=3.0, controlnet_conditioning_scale=1.3, control_guidance_start=0.25,
                  generator=torch.Generator("cpu").manual_seed(scene.sampler.seed), output_type="latent").images[0]
    blank_scene = one_region("sdxl", (Control("tiny", black, weight=1.3, start=0.25),), guidance=3.0)
    blank = renderer.render(blank_scene)[0].latent
    assert (ours - blank).abs().mean() > PICTURE_MARGIN
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_weight_zero_is_no_control_bit_for_bit(renderer, edges, family):
    plain = renderer.render(one_region(family, (), steps=1, guidance=1.0))[0].latent
    zero = renderer.render(one_region(family, (Control("tiny", edges, weight=0.0),), steps=1, guidance=1.0))[0].latent
    full = renderer.render(one_region(family, (Control("tiny", edges, weight=1.0),), steps=1, guidance=1.0))[0].latent
    assert torch.equal(plain, zero)
    assert not torch.equal(plain, full)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_each_item_reads_its_own_windows_crop_of_the_picture(renderer, tmp_path, family):
    """Two windows over a picture whose halves differ, one step: each item's ControlNet input is its window's crop
    as diffusers' ControlNet pipelines prepare a picture (RGB in [0, 1]), and the other half's would move its x0."""
    from diffusers.image_processor import VaeImageProcessor

    path = halves_picture(tmp_path / "halves.png", 128, 64)
    picture = Image.open(path)
    processor = VaeImageProcessor(do_convert_rgb=True, do_normalize=False)

    def crop(adapter, window):
        f = adapter.latent_factor
        return processor.preprocess(picture.crop((window.left * f, window.top * f, window.right * f,
                                                  window.bottom * f)))[0]

    scene = make_scene(128, 64, [region("a red apple", rect(0, 0, 1, 1, fractional=True))], steps=(0,), grid=2,
                       guidance=1.0, bootstrap=Bootstrap(0, 1.0, 0.2), tile=Tile(64, 64), max_batch=1)
    scene = dataclasses.replace(scene, model=Model(family, "tiny", Accelerator("none")),
                                control=(Control("tiny", path),))
    check_control_crops(renderer, scene, crop)


def test_a_controlnet_of_another_family_is_refused_naming_it(renderer, edges):
    """The sdxl tiny ControlNet reads 2048-wide text and size ids; loading it for sd15 names the folder."""
    folder = str(controlnet.ensure_preset("sdxl", "tiny"))
    with pytest.raises(RenderError, match=r"ControlNet '.*sdxl-controlnet-tiny.*' is made for another family"):
        renderer.prepare(one_region("sd15", (Control(folder, edges),), steps=1))


def test_a_regions_control_changes_only_that_regions_items(renderer, edges):
    """Two regions over three windows, one item per call: with a ControlNet on the right region, the left
    region's items compute bit-equal x0 from the same inputs (the first step; later steps start from a canvas
    the control changed), and the right region's differ."""
    regions = [region("a red apple", rect(0, 0, 64, 96)), region("a green pear", rect(64, 0, 64, 96))]
    scene = make_scene(WIDTH, HEIGHT, regions, steps=(0,), grid=2, guidance=1.0, bootstrap=Bootstrap(1, 1.0, 0.2),
                       tile=Tile(96, 16), max_batch=1)
    scene = dataclasses.replace(scene, model=Model("sd15", "tiny", Accelerator("none")))
    controlled = dataclasses.replace(scene, regions=(regions[0], dataclasses.replace(regions[1], control=(
        Control("tiny", edges),))))
    plain, with_control = item_x0(renderer, scene), item_x0(renderer, controlled)
    assert plain.keys() == with_control.keys()
    assert len({key[1] for key in plain}) >= 2
    first = [key for key in plain if key[0] == 0]
    assert {key[2] for key in first} == {0, 1}
    for key in first:
        assert torch.equal(plain[key], with_control[key]) == (key[2] == 0), key


def test_editing_a_control_picture_recomputes_only_the_picture(renderer, tmp_path):
    """What `watch` relies on: a saved control picture is read again and turned again into what crops are cut from;
    prompts, masks and plan come from the cache."""
    path = tmp_path / "edges.png"
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(path)
    scene = one_region("sd15", (Control("tiny", path),), steps=1, guidance=1.0)
    first = renderer.prepare(scene)
    Image.fromarray(np.full((HEIGHT, WIDTH, 3), 255, np.uint8)).save(path)
    second = renderer.prepare(scene)
    assert second.recomputed == {"control": 1, "control_source": 1}
    assert first.setup.controls.pictures[0].max() == 0 and second.setup.controls.pictures[0].min() == 1


def test_render_with_another_familys_controlnet_exits_1_naming_it(renderer, edges, tmp_path):
    """Valid as a scene (a local folder that exists), refused when it loads: exit 1, the folder named, no traceback."""
    from typer.testing import CliRunner

    from semanticdraw_cli.cli.app import app

    folder = controlnet.ensure_preset("sdxl", "tiny")
    scene = tmp_path / "scene.yaml"
    scene.write_text(f"canvas: {{width: {WIDTH}, height: {HEIGHT}}}\nmodel: {{family: sd15, checkpoint: tiny}}\n"
                     f"control: [{{model: {folder}, image: {edges}}}]\n"
                     "regions: [{prompt: a fox, mask: {rect: [0, 0, 64, 96]}}]\n")
    result = CliRunner().invoke(app, ["render", str(scene), "-o", str(tmp_path / "out"), "--quiet", "--allow-outside"])
    assert result.exit_code == 1, result.output
    assert "sdxl-controlnet-tiny" in result.output and "made for another family" in result.output
    assert "Traceback" not in result.output
