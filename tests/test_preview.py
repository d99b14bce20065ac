"""The layout picture: colours per region in z-order, the background picture, the legend beside it, speed."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from semanticdraw_cli.preview import (
    MIN_FONT,
    NEUTRAL,
    draw_layout,
    draw_preview,
    hires_line,
    legend_font_size,
    region_colour,
    region_colours,
)
from semanticdraw_cli.scene.loader import load_scene

SCENES = Path(__file__).resolve().parent.parent / "scenes"


def scene_from(tmp_path: Path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_scene(path)


TWO_SQUARES = """\
    canvas: {width: 256, height: 192}
    regions:
      - {name: under, prompt: a, mask: {rect: [120, 8, 80, 80]}}
      - {name: over, prompt: b, mask: {rect: [160, 48, 80, 80]}}
"""


def test_regions_are_filled_in_their_colours_in_z_order(tmp_path):
    scene = scene_from(tmp_path, TWO_SQUARES)
    image = draw_layout(scene)
    assert image.size == (256, 192) and image.mode == "RGB"
    px = np.asarray(image).astype(int)
    under, over = np.array(region_colour(0)), np.array(region_colour(1))
    assert np.abs(px[3, 3] - NEUTRAL).max() <= 1  # uncovered, away from the legend
    only_under, overlap, only_over = px[20, 140], px[70, 180], px[110, 220]
    assert np.abs(only_under - under).sum() < np.abs(only_under - over).sum()
    assert np.abs(only_over - over).sum() < np.abs(only_over - under).sum()
    assert np.abs(overlap - over).sum() < np.abs(overlap - under).sum()  # the later region lies on top
    assert not np.array_equal(overlap, only_over)  # translucent: the region below shows through


def test_outline_is_lighter_than_the_fill(tmp_path):
    px = np.asarray(draw_preview(scene_from(tmp_path, TWO_SQUARES))).astype(int)
    assert px[20, 120].sum() > px[20, 140].sum()  # the left edge of `under` vs its inside


def test_background_picture_shows_through(tmp_path):
    picture = np.zeros((192, 256, 3), np.uint8)
    picture[..., 1] = 200
    Image.fromarray(picture).save(tmp_path / "bg.png")
    scene = scene_from(tmp_path, TWO_SQUARES.replace("regions:", "background: {image: bg.png}\n    regions:"))
    px = np.asarray(draw_preview(scene)).astype(int)
    np.testing.assert_array_equal(px[3, 3], [0, 200, 0])  # uncovered: the picture itself
    assert px[20, 140, 1] > 60  # covered: the picture still shows through the fill


def swatch_rows(panel: np.ndarray, colour: tuple[int, int, int]) -> int:
    """How many rows of the legend panel show `colour` (a swatch's height)."""
    return int((panel == colour).all(axis=-1).any(axis=1).sum())


def test_legend_lies_beside_the_layout_and_lists_every_entry(tmp_path):
    scene = scene_from(tmp_path, TWO_SQUARES.replace("regions:", "background: {prompt: sky}\n    regions:"))
    image = np.asarray(draw_preview(scene)).astype(int)
    layout = np.asarray(draw_layout(scene)).astype(int)
    height, width = layout.shape[:2]
    assert image.shape[0] >= height and image.shape[1] > width
    np.testing.assert_array_equal(image[:height, :width], layout)  # the legend covers nothing
    panel = image[:, width:]
    assert swatch_rows(panel, region_colour(0)) > 0 and swatch_rows(panel, region_colour(1)) > 0
    one = np.asarray(draw_preview(dataclasses.replace(scene, regions=scene.regions[:1]))).astype(int)
    assert swatch_rows(one[:, width:], region_colour(1)) == 0  # one entry fewer


def test_legend_text_is_readable_at_every_canvas_size(tmp_path):
    assert legend_font_size(128, 64) == MIN_FONT >= 14
    assert legend_font_size(1280, 768) > MIN_FONT and legend_font_size(8192, 8192) > legend_font_size(1280, 768)
    for width, height in ((128, 64), (512, 512), (2048, 1024)):
        scene = scene_from(tmp_path, f"    canvas: {{width: {width}, height: {height}}}\n"
                                     "    regions:\n      - {prompt: a, mask: {rect: [0, 0, 8, 8]}}\n")
        panel = np.asarray(draw_preview(scene))[:, width:]
        assert swatch_rows(panel, region_colour(0)) == legend_font_size(width, height)  # a swatch is one text line high


def test_colours_are_distinct_and_label_maps_keep_their_colour(tmp_path):
    assert len({region_colour(i) for i in range(200)}) == 200
    Image.new("RGB", (64, 48), (22, 163, 74)).save(tmp_path / "l.png")
    scene = scene_from(tmp_path, """\
        canvas: {width: 64, height: 48}
        regions:
          - {prompt: a, mask: {rect: [0, 0, 8, 8]}}
          - {prompt: b, mask: {label_map: l.png, color: "#16a34a"}}
    """)
    colours = region_colours(scene)
    assert colours[1] == (22, 163, 74) and colours[0] != colours[1]


def test_many_regions_on_a_small_canvas_are_all_listed(tmp_path):
    regions = "".join(f"      - {{prompt: region number {i} with a long prompt, mask: {{rect: [{i}, 0, 4, 4]}}}}\n"
                      for i in range(60))
    scene = scene_from(tmp_path, "    canvas: {width: 128, height: 64}\n    regions:\n" + regions)
    image = draw_preview(scene)
    assert image.height > 60 * MIN_FONT  # the panel grows to list every region at a readable size
    panel = np.asarray(image)[:, 128:]
    assert all(swatch_rows(panel, colour) == MIN_FONT for colour in region_colours(scene))


def test_preview_of_the_paper_scene_keeps_the_canvas_and_adds_a_legend_panel():
    scene = load_scene(SCENES / "irworobongdo.yaml")
    image = draw_preview(scene)
    assert image.height == 768 and image.width > 1280
    np.testing.assert_array_equal(np.asarray(image)[:, :1280], np.asarray(draw_layout(scene)))


class CountingFont:
    """7 px per character; counts measurements."""

    def __init__(self):
        self.calls = 0

    def getlength(self, text: str) -> float:
        self.calls += 1
        return 7.0 * len(text)


def test_a_long_legend_text_is_cut_with_few_measurements():
    from semanticdraw_cli.preview import _fit_text

    font = CountingFont()
    text = "a very long prompt " * 530  # about 10,000 characters
    fitted = _fit_text(text, font, 700.0)
    assert fitted == text[:97] + "..." and font.getlength(fitted) <= 700.0
    assert font.calls <= 20  # binary search: about log2(10,000) + 2, not one per character
    assert _fit_text("short", CountingFont(), 700.0) == "short"
    assert _fit_text("wide", CountingFont(), 10.0) == "..."  # nothing fits beside the dots


def test_preview_of_a_10000_character_prompt(tmp_path):
    scene = scene_from(tmp_path, f"""\
        canvas: {{width: 256, height: 192}}
        regions:
          - {{name: long, prompt: {"word " * 2000}, mask: {{rect: [0, 0, 64, 64]}}}}
    """)
    image = draw_preview(scene)  # the legend cuts the prompt with a few measurements
    assert image.height >= 192 and image.width > 256


def test_a_wrapped_layout_is_shown_twice_along_each_wrapped_axis(tmp_path):
    text = """\
        canvas: {width: 96, height: 64, wrap: WRAP}
        sampler: {tile: {size: 64, stride: 32}}
        regions:
          - {prompt: a fox, mask: {rect: [80, 8, 32, 24]}}
        """
    for wrap, (rows, cols) in {"x": (1, 2), "y": (2, 1), "both": (2, 2)}.items():
        scene = scene_from(tmp_path, text.replace("WRAP", wrap))
        picture, layout = np.asarray(draw_preview(scene)), np.asarray(draw_layout(scene))
        tiles = picture[:64 * rows, :96 * cols]
        assert (tiles == np.tile(layout, (rows, cols, 1))).all()
        assert picture.shape[1] > 96 * cols  # the legend beside the tiles
    assert (layout[8:32, :16] != NEUTRAL).any(axis=-1).all()  # the fox came back at the left edge
    assert (np.asarray(draw_layout(dataclasses.replace(scene, canvas=dataclasses.replace(scene.canvas, wrap="y"))))
            [8:32, :16] == NEUTRAL).all()  # not on a canvas that wraps only its rows


def test_the_legend_of_a_hires_scene_gives_the_first_pass_size(tmp_path):
    scene = scene_from(tmp_path, """\
        canvas: {width: 1536, height: 1208}
        hires: {scale: 1.5, strength: 0.3}
        regions:
          - {prompt: a fox, mask: {rect: [0, 0, 64, 64]}}
        """)
    assert hires_line(scene) == "hires: pass 1 at 1024×808, upscaled ×1.5 (lanczos), pass 2 at strength 0.3"
    plain = draw_preview(dataclasses.replace(scene, hires=None))
    assert draw_preview(scene).height > plain.height or draw_preview(scene).width > plain.width  # one more line


def test_control_pictures_stand_beside_the_layout_a_regions_dimmed_outside_it(tmp_path):
    Image.new("RGB", (256, 192), (200, 100, 50)).save(tmp_path / "pose.png")
    Image.new("RGB", (256, 192), (250, 250, 250)).save(tmp_path / "edges.png")
    scene = scene_from(tmp_path, """\
        canvas: {width: 256, height: 192}
        control: [{model: tiny, image: pose.png}]
        regions:
          - {name: under, prompt: a, mask: {rect: [120, 8, 80, 80]}, control: [{model: tiny, image: edges.png}]}
    """)
    plain = draw_preview(dataclasses.replace(scene, control=(), regions=(
        dataclasses.replace(scene.regions[0], control=()),)))
    px = np.asarray(draw_preview(scene)).astype(int)
    assert px.shape[1] == plain.size[0] + 2 * (256 + 2)
    assert np.array_equal(px[:, :256], np.asarray(plain)[:, :256])  # the layout itself is unchanged
    assert tuple(px[100, 258 + 10]) == (200, 100, 50)  # the whole canvas's picture, as drawn
    region = 2 * 258
    assert tuple(px[20, region + 140]) == (250, 250, 250)  # the region's picture inside its region
    assert tuple(px[150, region + 20]) == (75, 75, 75)  # and dimmed outside it
