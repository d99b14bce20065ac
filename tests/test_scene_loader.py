"""The scene loader: defaults resolved from `defaults`, overrides, every problem with its line, round trip."""

from __future__ import annotations

import dataclasses
import json
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from semanticdraw_cli import defaults as d
from semanticdraw_cli.errors import SceneError
from semanticdraw_cli.scene.types import Accelerator, Canvas, Mask
from semanticdraw_cli.scene.loader import load_scene, scene_from_dict, scene_to_dict, scene_warnings
from semanticdraw_cli.families import registry

MINIMAL = """\
canvas: {width: 64, height: 48}
regions:
  - {prompt: a red fox, mask: {rect: [0, 0, 32, 48]}}
"""


def write(folder: Path, text: str, name: str = "scene.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path, *overrides: str) -> list:
    with pytest.raises(SceneError) as info:
        load_scene(path, overrides)
    return info.value.problems


def only(problems: list, key: str):
    found = [p for p in problems if p.key == key]
    assert len(found) == 1, f"expected one problem at {key}, got {problems}"
    return found[0]


# --- defaults and resolution -------------------------------------------------------------------


def test_minimal_scene_resolves_every_default_from_defaults(tmp_path):
    scene = load_scene(write(tmp_path, MINIMAL))
    lcm, family = registry.accelerators()["lcm"], registry.family(d.FAMILY)
    assert scene.name == "scene" and scene.canvas == Canvas(64, 48) and scene.version == d.SCENE_VERSION
    assert scene.model.family == d.FAMILY and scene.model.checkpoint == family.checkpoint
    assert scene.model.accelerator == Accelerator("lcm", lcm.lora, lcm.weight_name, d.LORA_WEIGHT, lcm.scheduler)
    assert scene.model.drop_t5 is False
    s = scene.sampler
    assert (s.method, s.steps, s.grid, s.guidance) == (d.METHOD, lcm.steps, lcm.grid, lcm.guidance)
    assert (s.seed, s.images, s.mask_mode, s.plan) == (d.SEED, d.IMAGES, d.MASK_MODE, d.PLAN)
    assert (s.cover_alpha, s.max_batch) == (d.COVER_ALPHA, d.MAX_BATCH) == (d.COVER_ALPHA, "auto")
    assert (s.compile, s.fuse_qkv, s.channels_last) == (d.COMPILE, d.FUSE_QKV, d.CHANNELS_LAST) == (False, False, False)
    assert (s.tile.size, s.tile.stride) == (family.tile_size, family.tile_stride)
    assert (s.bootstrap.steps, s.bootstrap.mix, s.bootstrap.leak_sensitivity) == (
        d.BOOTSTRAP_STEPS, d.BOOTSTRAP_MIX, d.BOOTSTRAP_LEAK_SENSITIVITY)
    assert scene.background.prompt is None and scene.background.image is None
    assert scene.background.negative == d.NEGATIVE
    (region,) = scene.regions
    assert region.name == "region1" and region.prompt == "a red fox"
    assert (region.negative, region.blur, region.strength, region.prompt_strength) == (
        d.NEGATIVE, d.BLUR, d.STRENGTH, d.PROMPT_STRENGTH)
    assert region.mask == Mask("rect", coords=(0.0, 0.0, 32.0, 48.0), fractional=False)


def test_scene_is_frozen(tmp_path):
    scene = load_scene(write(tmp_path, MINIMAL))
    with pytest.raises(dataclasses.FrozenInstanceError):
        scene.name = "other"


def test_defaults_section_applies_to_regions_that_do_not_set_their_own(tmp_path):
    scene = load_scene(write(tmp_path, """\
        canvas: {width: 64, height: 48}
        background: {prompt: sky}
        defaults: {negative: blurry, blur: 3.5, strength: 0.8, prompt_strength: 0.5}
        regions:
          - {prompt: a, mask: {rect: [0, 0, 8, 8]}}
          - {name: b, prompt: b, negative: ugly, blur: 0, strength: 1, prompt_strength: 1, mask: {rect: [0, 0, 8, 8]}}
    """))
    first, second = scene.regions
    assert (first.name, first.negative, first.blur, first.strength, first.prompt_strength) == (
        "region1", "blurry", 3.5, 0.8, 0.5)
    assert (second.name, second.negative, second.blur, second.strength, second.prompt_strength) == (
        "b", "ugly", 0.0, 1.0, 1.0)
    assert scene.background.negative == "blurry"  # the background is region 0: it takes the defaults too


def test_family_picks_its_accelerator_steps_and_tile(tmp_path):
    scene = load_scene(write(tmp_path, MINIMAL + "model: {family: sdxl}\n"))
    lightning, sdxl = registry.accelerators()["lightning"], registry.family("sdxl")
    assert scene.model.checkpoint == sdxl.checkpoint
    assert scene.model.accelerator == Accelerator("lightning", lightning.lora, lightning.weight_name, d.LORA_WEIGHT, lightning.scheduler)
    assert scene.sampler.steps == tuple(range(lightning.steps)) and scene.sampler.grid == lightning.grid
    assert (scene.sampler.tile.size, scene.sampler.tile.stride) == (sdxl.tile_size, sdxl.tile_stride)
    sd3 = load_scene(write(tmp_path, MINIMAL + "model: {family: sd3, drop_t5: true}\n"))
    assert sd3.model.drop_t5 is True and sd3.sampler.guidance == registry.accelerators()["flash"].guidance
    offloaded = load_scene(write(tmp_path, MINIMAL + "model: {family: sdxl, offload: model}\n"))
    assert offloaded.model.offload == "model" and scene.model.offload == d.OFFLOAD


def test_accelerator_none_uses_the_family_scheduler(tmp_path):
    scene = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: none}\n"))
    family = registry.family("sd15")
    assert scene.model.accelerator == Accelerator("none")
    assert scene.sampler.steps == family.own_scheduler_steps and scene.sampler.grid == family.own_scheduler_grid


def test_custom_lora_resolves_local_paths_and_keeps_hub_ids(tmp_path):
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "fast.safetensors").write_bytes(b"")
    local = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: {lora: loras/fast.safetensors, weight: 0.7}}\n"))
    assert local.model.accelerator == Accelerator("lora", str(tmp_path / "loras" / "fast.safetensors"), None, 0.7)
    hub = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: {lora: someone/fast-lora}}\n"))
    assert hub.model.accelerator == Accelerator("lora", "someone/fast-lora", None, d.LORA_WEIGHT)


def test_both_spellings_of_the_lcm_lora_resolve_to_the_same_sampler(tmp_path):
    """`accelerator: lcm`, its LoRA id alone, and its LoRA with `scheduler: lcm`: the LCM scheduler and its
    steps and guidance every time, not DDIM with the family's own steps."""
    lcm = registry.accelerators()["lcm"]
    named = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: lcm}\n", "named.yaml"))
    same_id = load_scene(write(tmp_path, MINIMAL + f"model: {{accelerator: {{lora: {lcm.lora}}}}}\n", "id.yaml"))
    given = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: {lora: loras/lcm, scheduler: lcm}}\n", "x.yaml"))
    for scene in (named, same_id, given):
        assert scene.model.accelerator.scheduler == "lcm"
        assert scene.sampler == named.sampler
    assert (named.sampler.steps, named.sampler.grid, named.sampler.guidance) == (lcm.steps, lcm.grid, lcm.guidance)
    assert same_id.model.accelerator == Accelerator("lora", lcm.lora, None, d.LORA_WEIGHT, "lcm")
    assert scene_warnings(same_id) == scene_warnings(given) == []


def test_a_lora_naming_its_scheduler_takes_that_schedulers_steps_and_guidance(tmp_path):
    scene = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: {lora: me/fast, scheduler: euler-trailing}}\n"))
    euler = d.SCHEDULERS["euler-trailing"]
    assert scene.model.accelerator.scheduler == "euler-trailing"
    assert (scene.sampler.steps, scene.sampler.grid, scene.sampler.guidance) == (
        tuple(range(euler.steps)), euler.grid, euler.guidance)
    ddim = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: {lora: me/fast, scheduler: ddim}}\n",
                            "ddim.yaml"))
    assert (ddim.sampler.grid, ddim.sampler.guidance) == (d.SCHEDULERS["ddim"].grid, d.SCHEDULERS["ddim"].guidance)
    assert scene_from_dict(scene_to_dict(scene), scene.source) == scene  # the scheduler round-trips


def test_a_lora_naming_no_scheduler_samples_like_none_and_is_warned_about(tmp_path):
    scene = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: {lora: someone/style}}\n"))
    none = load_scene(write(tmp_path, MINIMAL + "model: {accelerator: none}\n", "none.yaml"))
    assert scene.model.accelerator.scheduler is None and scene.sampler == none.sampler
    (warning,) = scene_warnings(scene)
    assert "model.accelerator" in warning and "names no scheduler" in warning and "scheduler: lcm" in warning


@pytest.mark.parametrize("text, message", [
    ("model: {family: sd3, accelerator: {lora: me/x, scheduler: lcm}}", "the sd3 family cannot sample with lcm"),
    ("model: {accelerator: {lora: me/x, scheduler: eular-trailing}}", "did you mean 'euler-trailing'?"),
])
def test_a_scheduler_the_family_cannot_use_is_refused(tmp_path, text, message):
    problem = only(problems_of(write(tmp_path, MINIMAL + text + "\n")), "model.accelerator.scheduler")
    assert message in str(problem)


def test_local_checkpoints_become_absolute_and_missing_ones_are_refused_at_once(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    found = load_scene(write(tmp_path, MINIMAL + "model: {checkpoint: models/mine}\n"))
    assert found.model.checkpoint == str(tmp_path / "models" / "mine")
    file = only(problems_of(write(tmp_path, MINIMAL + "model: {checkpoint: ../gone.safetensors}\n")), "model.checkpoint")
    assert f"file not found: {tmp_path.parent / 'gone.safetensors'}" in str(file)
    folder = only(problems_of(write(tmp_path, MINIMAL + "model: {accelerator: {lora: ./loras/gone}}\n")),
                  "model.accelerator.lora")
    assert f"folder not found: {tmp_path / 'loras' / 'gone'}" in str(folder)


@pytest.mark.parametrize("text, key, message", [
    ("model: {checkpoint: tinny}", "model.checkpoint", "did you mean 'tiny'?"),
    ("model: {checkpoint: my model}", "model.checkpoint", "neither a preset (tiny, small, full-random), a hub id"),
    ("model: {accelerator: {lora: fast}}", "model.accelerator.lora", "'fast' is neither a hub id (owner/name) nor"),
])
def test_a_name_that_is_no_preset_hub_id_or_path_is_refused_before_any_network(tmp_path, text, key, message):
    assert message in str(only(problems_of(write(tmp_path, MINIMAL + text + "\n")), key))
    for name in ("tiny", registry.family("sd15").checkpoint):  # presets and hub ids stay as they are
        assert load_scene(write(tmp_path, MINIMAL + f"model: {{checkpoint: {name}}}\n")).model.checkpoint == name


def test_multidiffusion_defaults_are_the_published_ones(tmp_path):
    scene = load_scene(write(tmp_path, MINIMAL + "sampler: {method: multidiffusion}\n"))
    s = scene.sampler
    assert s.steps == tuple(range(d.MULTIDIFFUSION_STEPS)) and s.grid == d.MULTIDIFFUSION_STEPS
    assert s.guidance == d.MULTIDIFFUSION_GUIDANCE
    assert (s.tile.size, s.tile.stride) == (d.MULTIDIFFUSION_TILE_SIZE, d.MULTIDIFFUSION_TILE_STRIDE)
    assert scene.model.accelerator == Accelerator("none")  # the base model with DDIM, as published


def test_multidiffusion_with_an_accelerator_takes_its_steps(tmp_path):
    """"MD + LCM": the classic algorithm with the LCM scheduler and the same steps as SemanticDraw."""
    scene = load_scene(write(tmp_path, MINIMAL + "sampler: {method: multidiffusion}\nmodel: {accelerator: lcm}\n"))
    assert scene.model.accelerator.name == "lcm"
    assert scene.sampler.steps == registry.accelerators()["lcm"].steps and scene.sampler.guidance == registry.accelerators()["lcm"].guidance


def test_sd3_needs_canvas_and_tiles_in_multiples_of_16(tmp_path):
    scene = write(tmp_path, "canvas: {width: 1032, height: 1024}\nmodel: {family: sd3}\n"
                  "sampler: {tile: {size: 1024, stride: 520}}\n"
                  "regions:\n  - {prompt: a fox, mask: {rect: [0, 0, 64, 64]}}\n")
    problems = problems_of(scene)
    assert "multiple of 16" in only(problems, "canvas.width").message
    assert "1032 -> 1024 or 1040" in only(problems, "canvas.width").hint
    assert "multiple of 16" in only(problems, "sampler.tile.stride").message
    assert not [p for p in problems if p.key in ("canvas.height", "sampler.tile.size")]


def test_steps_as_count_or_indices(tmp_path):
    count = load_scene(write(tmp_path, MINIMAL + "sampler: {steps: 6}\n"))
    assert count.sampler.steps == (0, 1, 2, 3, 4, 5) and count.sampler.grid == 6
    indices = load_scene(write(tmp_path, MINIMAL + "sampler: {steps: [0, 10, 90], grid: 100}\n"))
    assert indices.sampler.steps == (0, 10, 90) and indices.sampler.grid == 100


def test_relative_paths_resolve_against_the_scene_folder(tmp_path, monkeypatch):
    folder = tmp_path / "art"
    (folder / "masks").mkdir(parents=True)
    Image.new("L", (64, 48), 255).save(folder / "masks" / "m.png")
    Image.new("RGB", (64, 48), (1, 2, 3)).save(folder / "base.png")
    write(folder, """\
        canvas: {width: 64, height: 48}
        background: {image: base.png}
        regions:
          - {prompt: a, mask: masks/m.png}
          - {prompt: b, mask: {image: ./masks/m.png}}
    """)
    monkeypatch.chdir(tmp_path)  # not the scene's folder
    scene = load_scene(Path("art/scene.yaml"))
    assert scene.background.image == (folder / "base.png").resolve()
    assert [r.mask.path for r in scene.regions] == [(folder / "masks" / "m.png").resolve()] * 2
    assert all(r.mask.path.is_absolute() for r in scene.regions)


def test_label_map_colour_forms(tmp_path):
    Image.new("RGB", (64, 48), (245, 158, 11)).save(tmp_path / "l.png")
    scene = load_scene(write(tmp_path, """\
        canvas: {width: 64, height: 48}
        regions:
          - {prompt: a, mask: {label_map: l.png, color: "#F59E0B"}}
          - {prompt: b, mask: {label_map: l.png, color: [245, 158, 11]}}
    """))
    assert [r.mask.color for r in scene.regions] == [(245, 158, 11)] * 2
    assert scene.regions[0].mask.kind == "label_map"


# --- overrides ---------------------------------------------------------------------------------


def test_overrides_set_values_before_validation(tmp_path):
    path = write(tmp_path, MINIMAL + "  - {prompt: a dog, mask: {rect: [32, 0, 32, 48]}}\n")
    scene = load_scene(path, ["sampler.seed=7", "sampler.steps=[0,10]", "regions[1].prompt=a cat",
                              "background.prompt=blue sky", "model.accelerator={lora: x/y, weight: 0.5}"])
    assert scene.sampler.seed == 7 and scene.sampler.steps == (0, 10)
    assert scene.regions[1].prompt == "a cat" and scene.background.prompt == "blue sky"
    assert scene.model.accelerator == Accelerator("lora", "x/y", None, 0.5)
    assert load_scene(path).sampler.seed == d.SEED  # the file is untouched


def test_malformed_overrides_are_problems_of_key_set(tmp_path):
    path = write(tmp_path, MINIMAL)
    problems = problems_of(path, "sampler.seed", "regions[3].prompt=x", "sampler..seed=1", "sampler.seed=[1,",
                           "canvas.width.x=3")
    assert [p.key for p in problems] == ["--set"] * 5
    text = "\n".join(map(str, problems))
    assert "no '='" in text and "no such item" in text and "bad key" in text and "not valid YAML" in text
    assert "parent is not a mapping" in text


def test_a_bad_overridden_value_names_its_key_without_a_file_line(tmp_path):
    problem = only(problems_of(write(tmp_path, MINIMAL), "sampler.seed=abc"), "sampler.seed")
    assert problem.line is None and "whole number" in problem.message


# --- problems: every one, with a line and a hint -----------------------------------------------


def test_all_problems_are_collected_with_lines(tmp_path):
    path = write(tmp_path, """\
        version: 1
        canvas: {width: 1283, height: 0}
        sampler:
          seed: -3
          mask_mode: discreet
        regions:
          - {prompt: a, mask: {polygon: [[0, 0], [1, 1]]}}
          - prompt: b
            mask: {rect: [0, 0, 10]}
    """)
    problems = problems_of(path)
    width = only(problems, "canvas.width")
    assert width.line == 2 and "not a multiple of 8" in width.message and width.hint == "1283 -> 1280 or 1288"
    assert only(problems, "canvas.height").line == 2
    assert only(problems, "sampler.seed").line == 4
    mode = only(problems, "sampler.mask_mode")
    assert mode.line == 5 and "did you mean 'discrete'" in mode.hint
    polygon = only(problems, "regions[0].mask.polygon")
    assert polygon.line == 7 and "at least 3 points" in polygon.message
    assert only(problems, "regions[1].mask.rect").line == 9
    assert len(problems) == 6


def test_unknown_keys_get_did_you_mean(tmp_path):
    problems = problems_of(write(tmp_path, MINIMAL + "backgruond: {prompt: sky}\nsampler: {sed: 3}\n"))
    top = only(problems, "backgruond")
    assert top.line == 4 and "did you mean 'background'" in top.hint
    assert "did you mean 'seed'" in only(problems, "sampler.sed").hint


def test_malformed_yaml_names_the_line(tmp_path):
    problems = problems_of(write(tmp_path, "canvas: {width: 64, height: 48}\nregions:\n  - prompt: [unclosed\n"))
    assert len(problems) == 1 and "not valid YAML" in problems[0].message and problems[0].line in (3, 4)


def test_duplicate_keys_are_problems_and_the_rest_is_still_checked(tmp_path):
    problems = problems_of(write(tmp_path, MINIMAL + "canvas: {width: 8, height: 8}\nsampler: {seed: x}\n"))
    problem = only(problems, "canvas")
    assert "twice" in problem.message and problem.line == 4 and "line 1" in problem.message
    assert only(problems, "sampler.seed").line == 5


def test_unquoted_hash_colour_gets_a_quoting_hint(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "l.png")
    path = write(tmp_path, "canvas: {width: 64, height: 48}\nregions:\n  - prompt: a\n    mask:\n"
                           "      label_map: l.png\n      color: #f59e0b\n")
    problem = only(problems_of(path), "regions[0].mask.color")
    assert "missing" in problem.message and "quotes" in problem.hint


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("canvas: {width: wide, height: 48}", "canvas.width", "whole number"),
        ("canvas: {width: -64, height: 48}", "canvas.width", "positive"),
        ("canvas: {width: 20000, height: 48}", "canvas.width", f"limit of {d.MAX_CANVAS_SIDE}"),
        ("canvas: {width: 16384, height: 16384}", "canvas", f"limit of {d.MAX_CANVAS_PIXELS:,}"),
        ("version: 2", "version", "unsupported version 2"),
        ("model: {family: sd4}", "model.family", "unknown value 'sd4'"),
        ("model: {accelerator: lightning}", "model.accelerator", "for sdxl, not sd15"),
        ("model: {accelerator: turbo}", "model.accelerator", "unknown accelerator"),
        ("model: {drop_t5: true}", "model.drop_t5", "applies to sd3"),
        ("model: {offload: disk}", "model.offload", "unknown value 'disk'"),
        ("sampler: {steps: [4, 2]}", "sampler.steps", "must increase"),
        ("sampler: {steps: [0, 50]}", "sampler.steps", "[0, 50)"),
        ("sampler: {steps: 1000000000}", "sampler.steps", f"between 1 and {d.MAX_GRID}"),
        ("sampler: {steps: 4, grid: 50}", "sampler.grid", "plain count"),
        ("sampler: {images: 0}", "sampler.images", f"between 1 and {d.MAX_IMAGES}"),
        ("sampler: {guidance: .nan}", "sampler.guidance", "expected a number"),
        ("sampler: {tile: {size: 500, stride: 64}}", "sampler.tile.size", "500 -> 496 or 504"),
        ("sampler: {tile: {size: 512, stride: 1024}}", "sampler.tile.stride", "larger than the tile size"),
        ("sampler: {cover_alpha: 1.5}", "sampler.cover_alpha", "between 0 and 1"),
        ("sampler: {bootstrap: {leak_sensitivity: 0}}", "sampler.bootstrap.leak_sensitivity", "greater than 0"),
        ("sampler: {max_batch: 0}", "sampler.max_batch", "at least 1"),
        ("sampler: {max_batch: lots}", "sampler.max_batch", "expected auto or a whole number"),
        ("sampler: {compile: fast}", "sampler.compile", "reduce-overhead"),
        ("sampler: {compile: 1}", "sampler.compile", "true or false"),
        ("sampler: {fuse_qkv: yes please}", "sampler.fuse_qkv", "true or false"),
        ("defaults: {blur: -1}", "defaults.blur", f"between 0 and {d.MAX_BLUR}"),
        ("background: {prompt: 3}", "background.prompt", "expected text"),
        ("background: {image: nothere.png}", "background.image", "not found"),
    ],
)
def test_each_bad_field_is_named(tmp_path, text, key, words):
    scene = MINIMAL.replace("canvas: {width: 64, height: 48}", text) if text.startswith("canvas") else MINIMAL + text
    problem = only(problems_of(write(tmp_path, scene + "\n")), key)
    assert words in str(problem), str(problem)


@pytest.mark.parametrize(
    ("regions", "key", "words"),
    [
        ("[]", "regions", "no regions"),
        ("{prompt: a}", "regions", "expected a list"),
        ("[{mask: {rect: [0, 0, 8, 8]}}]", "regions[0].prompt", "missing"),
        ("[{prompt: a}]", "regions[0].mask", "missing"),
        ("[{prompt: a, mask: {rect: [0, 0, 8, 8], ellipse: [1, 1, 1, 1]}}]", "regions[0].mask", "exactly one"),
        ("[{prompt: a, mask: {ellipse: [1, 1, 0, 1]}}]", "regions[0].mask.ellipse", "radii must be positive"),
        ("[{prompt: a, mask: {polygon: [[0, 0], [1, x], [2, 2]]}}]", "regions[0].mask.polygon", "finite numbers"),
        ("[{prompt: a, mask: {rect: [0, 0, 8, 8], color: red}}]", "regions[0].mask.color", "label_map masks only"),
        ("[{prompt: a, mask: missing.png}]", "regions[0].mask", "file not found"),
        ("[{prompt: a, mask: {layer: fox}}]", "regions[0].mask.layer", "layered drawing"),
        ("[{name: x, prompt: a, mask: a.png}, {name: x, prompt: b, mask: a.png}]", "regions[1].name", "unique"),
    ],
)
def test_each_bad_region_is_named(tmp_path, regions, key, words):
    Image.new("L", (64, 48), 255).save(tmp_path / "a.png")
    problem = only(problems_of(write(tmp_path, f"canvas: {{width: 64, height: 48}}\nregions: {regions}\n")), key)
    assert words in str(problem), str(problem)


def test_too_many_regions_are_refused_before_reading_any(tmp_path):
    regions = "".join(f"  - {{prompt: r{i}, mask: missing{i}.png}}\n" for i in range(d.MAX_REGIONS + 1))
    problems = problems_of(write(tmp_path, "canvas: {width: 64, height: 48}\nregions:\n" + regions))
    assert [p.key for p in problems] == ["regions"]  # no per-region file problems: none was looked at
    assert f"at most {d.MAX_REGIONS}" in problems[0].message


def test_file_problems_of_masks_are_found_at_load(tmp_path):
    Image.new("L", (50, 50), 255).save(tmp_path / "square.png")
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    Image.new("RGB", (64, 48), (9, 9, 9)).save(tmp_path / "labels.png")
    problems = problems_of(write(tmp_path, """\
        canvas: {width: 64, height: 48}
        regions:
          - {prompt: a, mask: square.png}
          - {prompt: b, mask: corrupt.png}
          - {prompt: c, mask: {label_map: labels.png, color: "#ff0000"}}
    """))
    assert "50×50" in only(problems, "regions[0].mask").message
    assert "cannot decode corrupt.png" in only(problems, "regions[1].mask").message
    colour = only(problems, "regions[2].mask")
    assert "#ff0000" in colour.message and "#090909" in colour.hint and colour.line == 5


def test_unknown_file_type_and_missing_file(tmp_path):
    assert "unknown scene file type" in problems_of(tmp_path / "scene.json")[0].message
    assert "file not found" in problems_of(tmp_path / "absent.yaml")[0].message
    assert "empty" in problems_of(write(tmp_path, ""))[0].message
    assert "mapping" in problems_of(write(tmp_path, "- a\n- b\n"))[0].message


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4000))
def test_canvas_sides_must_be_multiples_of_8_and_the_hint_brackets_the_value(tmp_path_factory, width):
    path = write(tmp_path_factory.mktemp("s"), MINIMAL.replace("width: 64", f"width: {width}").replace("32, 48", "8, 8"))
    if width % 8 == 0:
        assert load_scene(path).canvas.width == width
        return
    hint = only(problems_of(path), "canvas.width").hint
    numbers = [int(v) for v in hint.replace("->", " ").replace("or", " ").split()]
    assert numbers[0] == width and all(v % 8 == 0 and abs(v - width) < 8 for v in numbers[1:])


# --- layered files -----------------------------------------------------------------------------


@pytest.fixture
def fake_layers(monkeypatch):
    calls = []
    from semanticdraw_cli.scene import loader as scene_loader

    module = types.ModuleType("semanticdraw_cli.scene.layers")
    module.load_layered_scene = lambda *args, **kwargs: calls.append((args, kwargs)) or "layered scene"
    module.drawing_of = lambda path: None
    monkeypatch.setattr(scene_loader, "layers", module)
    return calls


def test_psd_and_ora_files_are_delegated(tmp_path, fake_layers):
    assert load_scene(tmp_path / "art.psd", ["sampler.seed=3"]) == "layered scene"
    assert load_scene(tmp_path / "art.ora") == "layered scene"
    assert fake_layers[0] == ((tmp_path / "art.psd", ["sampler.seed=3"]), {"allow_outside": False})


def test_layers_key_delegates_with_the_other_settings(tmp_path, fake_layers):
    (tmp_path / "art.psd").write_bytes(b"")
    path = write(tmp_path, "layers: art.psd\nsampler: {seed: 5}\n")
    assert load_scene(path, ["sampler.steps=4"]) == "layered scene"
    (args, kwargs), = fake_layers
    assert args == ((tmp_path / "art.psd").resolve(), ["sampler.steps=4"])
    assert kwargs == {"settings": {"sampler": {"seed": 5}}, "settings_file": path, "allow_outside": False}
    missing = only(problems_of(write(tmp_path, "layers: gone.psd\n")), "layers")
    assert "not found" in missing.message and missing.line == 1


# --- round trip and warnings -------------------------------------------------------------------


def test_round_trip_of_every_field_and_mask_kind(tmp_path):
    Image.new("L", (64, 48), 255).save(tmp_path / "m.png")
    Image.new("RGB", (64, 48), (245, 158, 11)).save(tmp_path / "l.png")
    Image.new("RGB", (64, 48), (1, 2, 3)).save(tmp_path / "bg.png")
    path = write(tmp_path, """\
        canvas: {width: 64, height: 48}
        model: {accelerator: {lora: someone/lora, weight: 0.6, weight_name: a.safetensors}}
        sampler: {steps: [0, 3], grid: 8, guidance: 2.5, seed: 11, images: 2, mask_mode: continuous,
                  plan: reference, cover_alpha: 0.1, max_batch: 3, tile: {size: 32, stride: 16},
                  compile: max-autotune, fuse_qkv: true, channels_last: true,
                  bootstrap: {steps: 2, mix: 0.5, leak_sensitivity: 0.3}}
        background: {prompt: sky, negative: dull, image: bg.png}
        defaults: {blur: 2.5}
        regions:
          - {prompt: a, mask: m.png}
          - {prompt: b, mask: {label_map: l.png, color: "#f59e0b"}}
          - {prompt: c, strength: 0.4, mask: {rect: [0.1, 0.2, 0.3, 0.4], units: fraction}}
          - {prompt: d, mask: {ellipse: [10.5, 20, 5, 6]}}
          - {prompt: e, mask: {polygon: [[0, 0], [10, 0], [5, 7.25]]}}
    """)
    scene = load_scene(path)
    data = scene_to_dict(scene)
    assert scene_from_dict(data, source=scene.source) == scene
    assert scene_from_dict(yaml.safe_load(yaml.safe_dump(data)), source=scene.source) == scene
    assert json.loads(json.dumps(data)) == data  # fit for PNG text
    assert data["regions"][0]["mask"] == {"image": str((tmp_path / "m.png").resolve())}
    assert data["sampler"]["steps"] == [0, 3] and data["sampler"]["grid"] == 8
    assert data["regions"][2]["mask"] == {"rect": [0.1, 0.2, 0.3, 0.4], "units": "fraction"}


def test_scene_to_dict_of_array_masks_uses_a_placeholder(tmp_path):
    scene = load_scene(write(tmp_path, MINIMAL))
    region = dataclasses.replace(scene.regions[0], mask=Mask("array", array=np.ones((48, 64), np.float32)))
    data = scene_to_dict(dataclasses.replace(scene, regions=(region,)))
    assert data["regions"][0]["mask"] == {"layer": "region1"}


def test_warnings_name_empty_and_covered_regions(tmp_path):
    path = write(tmp_path, """\
        canvas: {width: 64, height: 48}
        regions:
          - {name: hidden, prompt: a, mask: {rect: [10, 10, 10, 10]}}
          - {name: outside, prompt: b, mask: {rect: [100, 100, 10, 10]}}
          - {name: partly, prompt: c, mask: {rect: [0, 0, 40, 40]}}
          - {name: top, prompt: d, mask: {rect: [5, 5, 20, 20]}}
    """)
    warnings = scene_warnings(load_scene(path))
    assert len(warnings) == 2
    assert str(path) in warnings[0] and "regions[0] (hidden)" in warnings[0] and "covered" in warnings[0]
    assert "regions[1] (outside)" in warnings[1] and "empty" in warnings[1]


def test_scene_from_dict_without_a_source(tmp_path):
    scene = scene_from_dict(yaml.safe_load(MINIMAL), source=None)
    assert scene.name == "scene" and scene.source is None
    with pytest.raises(SceneError) as info:
        scene_from_dict({"canvas": {"width": 64, "height": 48}}, source=None)
    assert info.value.problems[0].file == "<scene>" and info.value.problems[0].key == "regions"


def test_alias_bombs_and_self_reference_are_refused(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]  # 10^9 values
    bomb = problems_of(write(tmp_path, "\n".join(levels) + "\n", "bomb.yaml"))
    assert len(bomb) == 1 and "at most 1,000,000" in bomb[0].message
    loop = problems_of(write(tmp_path, "canvas: &c {width: 64, height: 48, self: *c}\n", "loop.yaml"))
    assert len(loop) == 1 and "refers to a mapping or list that contains it" in loop[0].message


def test_deep_nesting_is_a_problem_not_a_crash(tmp_path):
    problems = problems_of(write(tmp_path, "a: " + "[" * 500 + "]" * 500 + "\n"))
    assert "nested too deeply" in problems[0].message


def test_version_may_be_left_empty(tmp_path):
    assert load_scene(write(tmp_path, "version:\n" + MINIMAL)).version == d.SCENE_VERSION


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ("  - {prompt: 2024-02-30, mask: {rect: [0, 0, 8, 8]}}", "regions[1].prompt", "'2024-02-30' is not a valid date"),
        ("  - {prompt: 2024-02-28, mask: {rect: [0, 0, 8, 8]}}", "regions[1].prompt", "expected text"),
        ("  - {prompt: a, negative: \"\\ud800\", mask: {rect: [0, 0, 8, 8]}}", "regions[1].negative", "lone surrogate"),
        ("  - {prompt: \"sky \\udfff\", mask: {rect: [0, 0, 8, 8]}}", "regions[1].prompt", "cannot be encoded as UTF-8"),
        ("sampler: {seed: !!bool maybe}", "sampler.seed", "'maybe' is not a valid true/false value"),
        ("sampler: {seed: !!float abc}", "sampler.seed", "'abc' is not a valid number"),
        ("sampler: {seed: !!int 0x}", "sampler.seed", "not a valid whole number"),
        ("defaults: {blur: " + "9" * 5000 + "}", "defaults.blur", "a whole number of 5,000 digits is too large"),
    ],
)
def test_yaml_values_that_cannot_be_constructed_are_problems_naming_the_key(tmp_path, line, key, words):
    problem = only(problems_of(write(tmp_path, MINIMAL + line + "\n")), key)
    assert words in problem.message and problem.line == 4


def test_a_list_longer_than_any_scene_needs_is_refused_while_parsing(tmp_path):
    points = ", ".join(f"[{i % 64}, {i % 48}]" for i in range(100_000))
    path = write(tmp_path, MINIMAL + f"  - {{prompt: b, mask: {{polygon: [{points}]}}}}\n")
    (problem,) = problems_of(path)
    assert problem.key == "regions[1].mask.polygon" and problem.line == 4
    assert f"more than {d.MAX_POLYGON_POINTS:,} items" in problem.message


def test_set_values_go_through_the_same_yaml_reader(tmp_path):
    problems = problems_of(write(tmp_path, MINIMAL), "sampler.seed=2024-02-30", "sampler.steps=&a [*a]")
    assert [p.key for p in problems] == ["--set", "--set"]
    assert "not a valid date" in problems[0].message and "refers to a mapping or list" in problems[1].message


# --- numbers and text the later stages could not handle ----------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("defaults: {blur: " + "9" * 400 + "}", "defaults.blur", "a number of 400 digits"),
        ("defaults: {blur: 1.0e+9}", "defaults.blur", f"between 0 and {d.MAX_BLUR}"),
        ("sampler: {guidance: 1.0e+300}", "sampler.guidance", f"over the limit of {d.MAX_NUMBER}"),
        ("sampler: {max_batch: " + "9" * 30 + "}", "sampler.max_batch", "a number of 30 digits is over the limit"),
        ("model: {accelerator: {lora: x/y, weight: -1.0e+300}}", "model.accelerator.weight", "below the limit"),
        ("canvas: {width: " + "8" * 400 + ", height: 48}", "canvas.width", "a number of 400 digits is over the limit"),
        ("sampler: {seed: 18446744073709551615, images: 2}", "sampler.seed", "past the largest seed"),
    ],
)
def test_numbers_beyond_what_the_math_can_take_are_named(tmp_path, text, key, words):
    scene = MINIMAL.replace("canvas: {width: 64, height: 48}", text) if text.startswith("canvas") else MINIMAL + text
    problem = only(problems_of(write(tmp_path, scene + "\n")), key)
    assert words in str(problem), str(problem)


@pytest.mark.parametrize(
    ("mask", "words"),
    [
        ({"rect": [0, 0, 1e300, 8]}, f"within ±{d.MAX_SHAPE_COORDINATE:,}"),
        ({"rect": [0, 0, 10**400, 8]}, "finite numbers"),
        ({"ellipse": [1, 1, 5, -(10**30)]}, f"within ±{d.MAX_SHAPE_COORDINATE:,}"),
        ({"polygon": [[i % 64, i % 48] for i in range(d.MAX_POLYGON_POINTS + 1)]}, f"at most {d.MAX_POLYGON_POINTS:,}"),
    ],
)
def test_shapes_beyond_the_limits_are_refused(mask, words):
    data = {"canvas": {"width": 64, "height": 48}, "regions": [{"prompt": "a", "mask": mask}]}
    with pytest.raises(SceneError) as info:
        scene_from_dict(data, source=None)
    assert words in str(only(info.value.problems, f"regions[0].mask.{next(iter(mask))}"))


def test_text_that_cannot_be_encoded_is_named():
    data = {"canvas": {"width": 64, "height": 48}, "background": {"negative": "dull \udfff"},
            "regions": [{"prompt": "a \ud800 fox", "mask": {"rect": [0, 0, 8, 8]}}]}
    with pytest.raises(SceneError) as info:
        scene_from_dict(data, source=None)
    assert "lone surrogate \\ud800" in only(info.value.problems, "regions[0].prompt").message
    assert "lone surrogate \\udfff" in only(info.value.problems, "background.negative").message


def test_the_fast_yaml_loader_reads_what_the_python_one_reads():
    """libyaml parses valid scenes (about 3x faster); the data and every key's line are the same."""
    from semanticdraw_cli.scene import yaml_text

    if len(yaml_text._LOADERS) == 1:
        pytest.skip("PyYAML without libyaml")
    for path in sorted(Path(__file__).resolve().parent.parent.joinpath("scenes").glob("*.yaml")):
        text = path.read_text(encoding="utf-8") + "extra: [1, {a: &x [2, 3]}, *x, 2024-01-02, ~, 'q']\n"
        fast, python = (yaml.load(text, Loader=loader) for loader in yaml_text._LOADERS)
        assert fast == python and fast.lines == python.lines, path.name
        assert yaml_text._plain(fast, "", lines := {}, []) == yaml_text._plain(python, "", other := {}, [])
        assert lines == other, path.name


def test_a_region_seed_and_guidance_load_and_round_trip(tmp_path):
    from semanticdraw_cli.scene.dicts import scene_to_dict

    text = MINIMAL.replace("mask: {rect: [0, 0, 32, 48]}}", "mask: {rect: [0, 0, 32, 48]}, seed: 12, guidance: 4.5}")
    scene = load_scene(write(tmp_path, text))
    assert (scene.regions[0].seed, scene.regions[0].guidance) == (12, 4.5)
    assert {"seed": 12, "guidance": 4.5}.items() <= scene_to_dict(scene)["regions"][0].items()
    assert "seed" not in scene_to_dict(load_scene(write(tmp_path, MINIMAL)))["regions"][0]  # unset: not written


@pytest.mark.parametrize("field, words", [("seed: -1", "between 0 and"), ("guidance: -2", "at least 0"),
                                          ("seed: soon", "whole number")])
def test_a_bad_region_seed_or_guidance_is_named(tmp_path, field, words):
    text = MINIMAL.replace("mask: {rect: [0, 0, 32, 48]}}", f"mask: {{rect: [0, 0, 32, 48]}}, {field}}}")
    problem = only(problems_of(write(tmp_path, text)), f"regions[0].{field.split(':')[0]}")
    assert words in problem.message


def test_a_reroll_section_names_a_region_the_scene_has(tmp_path):
    text = MINIMAL + "reroll: {from: nothere.png, regions: [sky]}\n"
    problems = problems_of(write(tmp_path, text))
    assert "not found" in only(problems, "reroll.from").message
    assert "'sky'" in only(problems, "reroll.regions").message
