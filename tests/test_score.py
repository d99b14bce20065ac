"""Prompt adherence: crop geometry and masking, scores with a fake embedder and the tiny CLIP, the gate's fields."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import SceneError
from semanticdraw_cli.render import region_masks
from semanticdraw_cli.scene.types import Background, Quality
from semanticdraw_cli.scene.loader import scene_from_dict, scene_to_dict
from semanticdraw_cli.score import (
    NEUTRAL_FILL,
    area_masks,
    bounding_box,
    clip_score,
    gate_message,
    masked_crop,
    pad_square,
    score_image,
    thresholds,
)
from tests.scene_factory import make_scene, rect, region

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0), "yellow": (255, 255, 0)}


class ColourShare:
    """A fake embedder: the 'cosine' of (crop, text) is the share of the crop's pixels in the colour the text names."""

    def __init__(self):
        self.crops: dict[str, np.ndarray] = {}

    def __call__(self, images, texts):
        self.crops.update(zip(texts, images))
        return np.array([np.all(image == COLOURS[text], axis=-1).mean() for image, text in zip(images, texts)])


def two_region_scene(**quality):
    """64×48: a red rectangle, a blue one partly on top of it, a green background prompt."""
    scene = make_scene(64, 48, [region("red", rect(4, 4, 32, 24)), region("blue", rect(24, 16, 32, 24))],
                       background=Background(prompt="green"))
    return dataclasses.replace(scene, quality=Quality(**quality))


def painted(scene) -> np.ndarray:
    """Each area in its prompt's colour, exactly where the scorer will look."""
    inside, uncovered = area_masks(region_masks(scene))
    image = np.zeros((scene.canvas.height, scene.canvas.width, 3), np.uint8)
    image[uncovered] = COLOURS["green"]
    for r, reg in enumerate(scene.regions):
        image[inside[r]] = COLOURS[reg.prompt]
    return image


# --- geometry ---------------------------------------------------------------------------------


def test_bounding_box_is_end_exclusive_and_none_when_empty():
    mask = np.zeros((10, 12), bool)
    assert bounding_box(mask) is None
    mask[3, 5] = True
    assert bounding_box(mask) == (5, 3, 6, 4)
    mask[7, 2] = True
    assert bounding_box(mask) == (2, 3, 6, 8)


def test_masked_crop_keeps_the_area_fills_the_rest_and_pads_to_a_centred_square():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:9, 2:22] = True  # 4 rows × 20 columns
    mask[6, 2] = False  # a hole inside the box
    crop = masked_crop(image, mask, fill=(1, 2, 3))
    assert crop.shape == (20, 20, 3)
    top = (20 - 4) // 2
    np.testing.assert_array_equal(crop[top:top + 4][mask[5:9, 2:22]], image[5:9, 2:22][mask[5:9, 2:22]])
    assert (crop[top + 1, 0] == (1, 2, 3)).all()  # the hole
    assert (crop[:top] == (1, 2, 3)).all() and (crop[top + 4:] == (1, 2, 3)).all()  # the padding
    assert masked_crop(image, np.zeros((20, 30), bool)) is None


def test_pad_square_of_a_tall_crop_pads_left_and_right():
    crop = np.full((6, 2, 3), 9, np.uint8)
    out = pad_square(crop, NEUTRAL_FILL)
    assert out.shape == (6, 6, 3) and (out[:, 2:4] == 9).all() and (out[:, :2] == NEUTRAL_FILL).all()


def test_neutral_fill_is_clips_image_mean():
    assert NEUTRAL_FILL == (123, 117, 104)


def test_area_masks_give_each_pixel_to_at_most_one_area():
    masks = np.array([[[0.2, 0.5, 0.9, 0.3, 0.6, 0.8]],
                      [[0.1, 0.0, 0.0, 0.3, 0.6, 0.7]]], np.float32)  # (2, 1, 6)
    inside, uncovered = area_masks(masks)
    assert inside.tolist() == [[[False, True, True, False, False, True]],   # the strongest mask, at least 0.5
                               [[False, False, False, False, True, False]]]  # a tie goes to the later region
    assert uncovered.tolist() == [[True, False, False, False, False, False]]  # 0.3 + 0.3: covered, owned by none
    assert inside.sum(axis=0).max() == 1 and not (inside.any(axis=0) & uncovered).any()


def test_clip_score_is_100_cosine_clipped_at_zero():
    assert clip_score(0.3125) == pytest.approx(31.25) and clip_score(-0.2) == 0.0


def test_later_regions_hide_what_they_cover():
    scene = two_region_scene()
    inside, _ = area_masks(region_masks(scene))
    assert not (inside[0] & inside[1]).any()
    assert inside[0][20, 10] and not inside[0][20, 30] and inside[1][20, 30]


# --- scores -----------------------------------------------------------------------------------


def test_each_region_is_scored_on_its_own_crop_and_the_background_on_the_uncovered_area():
    scene = two_region_scene()
    fake = ColourShare()
    scores = score_image(painted(scene), scene, fake)
    inside, uncovered = area_masks(region_masks(scene))
    for name, mask in (("red", inside[0]), ("blue", inside[1])):
        x0, y0, x1, y1 = bounding_box(mask)
        area = next(a for a in scores.regions if a.name == name)
        assert area.box == (x0, y0, x1, y1) and area.pixels == mask.sum()
        assert area.score == pytest.approx(100 * mask.sum() / max(x1 - x0, y1 - y0) ** 2)
    assert scores.background.pixels == uncovered.sum() and scores.background.box == (0, 0, 64, 48)
    background_colours = {tuple(c) for c in fake.crops["green"].reshape(-1, 3)}
    assert background_colours == {COLOURS["green"], NEUTRAL_FILL}  # no region's pixel reaches the background
    assert {tuple(c) for c in fake.crops["red"].reshape(-1, 3)} == {COLOURS["red"], NEUTRAL_FILL}
    assert scores.clip_fg == pytest.approx((scores.regions[0].score + scores.regions[1].score) / 2)
    assert scores.clip_bg == scores.background.score


def test_repainting_one_region_changes_only_its_score():
    scene = two_region_scene()
    before = score_image(painted(scene), scene, ColourShare())
    image = painted(scene)
    inside, _ = area_masks(region_masks(scene))
    image[inside[0]] = COLOURS["yellow"]
    after = score_image(image, scene, ColourShare())
    assert before.regions[0].score > 0 and after.regions[0].score == 0
    assert after.regions[1] == before.regions[1] and after.background == before.background


def test_repainting_the_uncovered_area_changes_only_the_background_score():
    scene = two_region_scene()
    image = painted(scene)
    before = score_image(image, scene, ColourShare())
    _, uncovered = area_masks(region_masks(scene))
    image[uncovered] = COLOURS["yellow"]
    after = score_image(image, scene, ColourShare())
    assert after.background.score == 0 < before.background.score
    assert after.regions == before.regions


@pytest.mark.slow
def test_with_the_tiny_clip_repainting_one_region_changes_only_its_own_cosine():
    from semanticdraw_cli.families.clip import load_clip

    clip = load_clip("tiny", "cpu")
    scene = two_region_scene()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    before = score_image(image, scene, clip, fill=clip.fill)
    inside, _ = area_masks(region_masks(scene))
    image[inside[1]] = 255 - image[inside[1]]
    after = score_image(image, scene, clip, fill=clip.fill)
    assert abs(after.regions[1].cosine - before.regions[1].cosine) > 1e-3
    assert after.regions[0].cosine == pytest.approx(before.regions[0].cosine, abs=1e-6)
    assert after.background.cosine == pytest.approx(before.background.cosine, abs=1e-6)
    assert clip.fill == NEUTRAL_FILL


def test_without_a_background_prompt_the_background_is_not_scored():
    scene = dataclasses.replace(two_region_scene(), background=Background())
    fake = ColourShare()
    scores = score_image(painted(scene), scene, fake)
    assert scores.background is None and scores.clip_bg is None and set(fake.crops) == {"red", "blue"}
    assert scores.to_dict()["background"] is None


def test_an_empty_region_is_not_scored_and_never_fails():
    scene = two_region_scene(min_region_score=50.0)
    weak = dataclasses.replace(scene.regions[0], strength=0.4)  # mask below 0.5 everywhere
    scene = dataclasses.replace(scene, regions=(weak, scene.regions[1]))
    fake = ColourShare()
    scores = score_image(painted(scene), scene, fake)
    assert scores.regions[0].score is None and scores.regions[0].box is None and "red" not in fake.crops
    assert scores.clip_fg == scores.regions[1].score
    assert scores.regions[1].score > 50 and scores.failures == []


def test_an_image_of_another_size_is_refused():
    scene = two_region_scene()
    with pytest.raises(ValueError, match="canvas 64x48"):
        score_image(np.zeros((48, 60, 3), np.uint8), scene, ColourShare())


# --- the gate ---------------------------------------------------------------------------------


def test_a_regions_own_min_score_overrides_the_scene_wide_one():
    scene = two_region_scene(min_region_score=10.0)
    blue = dataclasses.replace(scene.regions[1], min_score=99.0)
    scene = dataclasses.replace(scene, regions=(scene.regions[0], blue))
    assert thresholds(scene) == [10.0, 99.0]
    scores = score_image(painted(scene), scene, ColourShare())
    assert scores.regions[0].score > 10 and scores.regions[1].score < 99
    assert [a.name for a in scores.failures] == ["blue"]
    message = gate_message([("x.png", scores.to_dict())])
    assert "exit 3" in message and f"x.png: blue scored {scores.regions[1].score:.2f}, below its minimum 99" in message
    assert "red scored" not in message


def test_the_background_has_its_own_threshold():
    scene = two_region_scene(min_background_score=100.0)
    scores = score_image(painted(scene), scene, ColourShare())
    assert [a.name for a in scores.failures] == ["background"]
    message = gate_message([("x.png", scores.to_dict())])
    assert "1 area(s)" in message and "x.png: background scored" in message


def test_no_failures_no_message():
    scene = two_region_scene(min_region_score=0.0)
    assert gate_message([("x.png", score_image(painted(scene), scene, ColourShare()).to_dict())]) is None


def test_scores_as_json():
    scene = two_region_scene(min_region_score=1.0)
    data = score_image(painted(scene), scene, ColourShare(), clip="fake").to_dict()
    assert set(data) == {"clip", "mask_threshold", "clip_fg", "clip_bg", "passed", "regions", "background", "seconds"}
    assert data["clip"] == "fake" and data["mask_threshold"] == defaults.SCORE_MASK_THRESHOLD and data["passed"]
    assert [a["name"] for a in data["regions"]] == ["red", "blue"]
    assert set(data["regions"][0]) == {"name", "prompt", "score", "cosine", "min_score", "passed", "pixels", "box"}
    assert data["regions"][0]["min_score"] == 1.0 and data["background"]["min_score"] is None


# --- scene fields -----------------------------------------------------------------------------


def scene_dict(**extra):
    data = {"canvas": {"width": 64, "height": 64}, "regions": [{"prompt": "a fox", "mask": {"rect": [0, 0, 8, 8]}}]}
    return {**data, **extra}


def test_quality_fields_parse_with_defaults_and_round_trip():
    scene = scene_from_dict(scene_dict(), None)
    assert scene.quality == Quality(defaults.MIN_REGION_SCORE, defaults.MIN_BACKGROUND_SCORE) == Quality()
    assert scene.regions[0].min_score is None
    data = scene_dict(quality={"min_region_score": 22, "min_background_score": 18.5})
    data["regions"][0]["min_score"] = 30
    scene = scene_from_dict(data, None)
    assert scene.quality == Quality(22.0, 18.5) and scene.regions[0].min_score == 30.0
    assert scene_from_dict(scene_to_dict(scene), None) == scene


@pytest.mark.parametrize(
    ("extra", "region_field", "expected"),
    [
        ({"quality": {"min_region_score": 101}}, {}, "quality.min_region_score: must be between 0 and 100, got 101"),
        ({"quality": {"min_background_score": "high"}}, {}, "quality.min_background_score: expected a number"),
        ({"quality": {"min_score": 5}}, {}, "quality.min_score: unknown key 'min_score'"),
        ({}, {"min_score": -1}, "regions[0].min_score: must be between 0 and 100, got -1"),
    ],
)
def test_bad_quality_fields_name_the_key(extra, region_field, expected):
    data = scene_dict(**extra)
    data["regions"][0].update(region_field)
    with pytest.raises(SceneError) as error:
        scene_from_dict(data, None)
    assert expected in str(error.value)


def test_min_score_can_be_set_from_the_command_line_style_overrides():
    scene = scene_from_dict(scene_dict(), None, ["quality.min_region_score=12.5", "regions[0].min_score=40"])
    assert scene.quality.min_region_score == 12.5 and thresholds(scene) == [40.0]


def test_a_region_name_cannot_add_a_line_to_the_gate_message():
    scene = two_region_scene(min_region_score=10.0)
    blue = dataclasses.replace(scene.regions[1], name="blue\nx.png: red passed\x1b[2J", min_score=99.0)
    scene = dataclasses.replace(scene, regions=(scene.regions[0], blue))
    message = gate_message([("x\r.png", score_image(painted(scene), scene, ColourShare()).to_dict())])
    assert "x\\r.png: blue\\nx.png: red passed\\x1b[2J scored" in message and len(message.splitlines()) == 2
