"""Mask sources -> coverage arrays: exact shape coverage, picture masks, label maps, bad files."""

from __future__ import annotations

import math
import struct
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import MaskError
from semanticdraw_cli.scene.rasterize import load_rgb, rasterize_mask
from semanticdraw_cli.scene.types import Canvas, Mask

CANVAS = Canvas(64, 48)


def shape(kind: str, *coords: float, fractional: bool = False) -> Mask:
    return Mask(kind=kind, coords=tuple(float(v) for v in coords), fractional=fractional)


def polygon(*points: tuple[float, float]) -> Mask:
    return shape("polygon", *(v for p in points for v in p))


# --- shapes ------------------------------------------------------------------------------------


def test_rect_on_pixel_edges_is_exact():
    m = rasterize_mask(shape("rect", 10, 5, 20, 8), CANVAS)
    assert m.shape == (48, 64) and m.dtype == np.float32
    expected = np.zeros((48, 64), np.float32)
    expected[5:13, 10:30] = 1.0
    np.testing.assert_array_equal(m, expected)


def test_rect_between_pixels_is_anti_aliased_by_area():
    m = rasterize_mask(shape("rect", 10.5, 5.25, 3, 2), CANVAS)
    assert m.sum() == pytest.approx(6.0)
    assert m[6, 10] == pytest.approx(0.5)  # half the pixel's width
    assert m[5, 11] == pytest.approx(0.75)  # three of four sub-rows
    assert m[5, 10] == pytest.approx(0.375)  # corner: both
    assert m[7, 13] == pytest.approx(0.5 * 0.25)
    assert m[6, 11] == 1.0


def test_fractional_units_scale_x_by_width_and_y_by_height():
    px = rasterize_mask(shape("rect", 16, 12, 32, 24), CANVAS)
    fr = rasterize_mask(shape("rect", 0.25, 0.25, 0.5, 0.5, fractional=True), CANVAS)
    np.testing.assert_array_equal(fr, px)
    ellipse = rasterize_mask(shape("ellipse", 0.5, 0.5, 0.25, 0.25, fractional=True), CANVAS)
    assert ellipse.sum() == pytest.approx(math.pi * 16 * 12, rel=0.01)  # a circle in fractions is an ellipse


def test_ellipse_area_centre_and_symmetry():
    m = rasterize_mask(shape("ellipse", 32, 24, 20, 10), CANVAS)
    assert m.sum() == pytest.approx(math.pi * 200, rel=0.005)
    assert m[24, 32] == 1.0 and m[24, 50] == 1.0 and m[24, 53] == 0.0 and m[13, 32] == 0.0
    np.testing.assert_allclose(m, m[:, ::-1], atol=1e-6)  # symmetric about x = 32
    assert 0.0 < m[24, 51] < 1.0 or 0.0 < m[24, 52] < 1.0  # soft edge


def test_triangle_and_concave_polygon_areas():
    tri = rasterize_mask(polygon((0, 0), (64, 0), (0, 48)), CANVAS)
    assert tri.sum() == pytest.approx(64 * 48 / 2, abs=0.5)
    ell = polygon((8, 8), (40, 8), (40, 16), (16, 16), (16, 40), (8, 40))  # an L: 32×8 + 8×24
    m = rasterize_mask(ell, CANVAS)
    assert m.sum() == pytest.approx(32 * 8 + 8 * 24)
    assert m[30, 30] == 0.0 and m[12, 30] == 1.0 and m[30, 12] == 1.0


def test_self_intersecting_polygon_uses_even_odd():
    # Two overlapping squares traced as one outline: the overlap is crossed twice, so it is a hole.
    outline = polygon((4, 4), (28, 4), (28, 28), (16, 28), (16, 16), (40, 16), (40, 40), (4, 40))
    m = rasterize_mask(outline, CANVAS)
    assert m[8, 8] == 1.0 and m[36, 36] == 1.0
    assert m[22, 22] == 0.0  # inside both squares: even crossings


def test_shapes_outside_or_enormous_are_clipped_not_allocated():
    assert rasterize_mask(shape("rect", 100, 100, 10, 10), CANVAS).sum() == 0.0
    assert rasterize_mask(shape("ellipse", -50, -50, 10, 10), CANVAS).sum() == 0.0
    whole = rasterize_mask(shape("rect", -1e12, -1e12, 2e12, 2e12), CANVAS)
    np.testing.assert_array_equal(whole, np.ones((48, 64), np.float32))
    half = rasterize_mask(polygon((-1e9, -1e9), (32, -1e9), (32, 1e9), (-1e9, 1e9)), CANVAS)
    assert half[:, :32].min() == 1.0 and half[:, 32:].max() == 0.0


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(-20, 80), y=st.floats(-20, 60), w=st.floats(0.1, 90), h=st.floats(0.1, 70),
)
def test_rect_coverage_equals_clipped_area(x, y, w, h):
    m = rasterize_mask(shape("rect", x, y, w, h), CANVAS)
    clipped_w = max(0.0, min(x + w, 64) - max(x, 0))
    top, bottom = max(y, 0), min(y + h, 48)
    # Horizontal coverage is exact; vertically each row is sampled at 4 sub-rows (error < 1/4 row per edge).
    assert abs(m.sum() - clipped_w * max(0.0, bottom - top)) <= clipped_w * 0.5 + 1e-3
    assert m.min() >= 0.0 and m.max() <= 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 64), st.floats(0, 48)), min_size=3, max_size=3))
def test_triangle_coverage_equals_shoelace_area(points):
    (ax, ay), (bx, by), (cx, cy) = points
    area = abs((bx - ax) * (cy - ay) - (cx - ax) * (by - ay)) / 2
    m = rasterize_mask(polygon(*points), CANVAS)
    width = max(ax, bx, cx) - min(ax, bx, cx)
    assert abs(m.sum() - area) <= 0.25 * width * 3 + 1e-3  # midpoint rule is exact between vertex rows


# --- picture masks -----------------------------------------------------------------------------


def test_grayscale_mask_is_its_value(tmp_path):
    values = np.zeros((48, 64), np.uint8)
    values[:, 32:] = 255
    values[0, 0] = 51
    Image.fromarray(values, "L").save(tmp_path / "m.png")
    m = rasterize_mask(Mask("image", path=tmp_path / "m.png"), CANVAS)
    assert m[10, 40] == 1.0 and m[10, 10] == 0.0 and m[0, 0] == pytest.approx(0.2)


def test_alpha_wins_over_colour(tmp_path):
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only the left half is opaque
    rgba[:, :16, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    m = rasterize_mask(Mask("image", path=tmp_path / "a.png"), CANVAS)
    assert m[:, :16].min() == 1.0 and m[:, 16:].max() == 0.0
    la = Image.fromarray(rgba[..., 3], "L")
    Image.merge("LA", (Image.new("L", (64, 48), 0), la)).save(tmp_path / "la.png")
    np.testing.assert_array_equal(rasterize_mask(Mask("image", path=tmp_path / "la.png"), CANVAS), m)


def test_colour_picture_uses_luminance(tmp_path):
    Image.new("RGB", (64, 48), (255, 0, 0)).save(tmp_path / "red.png")
    m = rasterize_mask(Mask("image", path=tmp_path / "red.png"), CANVAS)
    assert m.mean() == pytest.approx(76 / 255, abs=1 / 255)  # ITU-R 601: 0.299 * 255


def test_sixteen_bit_grayscale_is_normalised(tmp_path):
    values = np.full((48, 64), 65535, np.uint16)
    values[:, :32] = 32768
    Image.fromarray(values).save(tmp_path / "deep.png")
    m = rasterize_mask(Mask("image", path=tmp_path / "deep.png"), CANVAS)
    assert m[0, 40] == pytest.approx(1.0) and m[0, 0] == pytest.approx(0.5, abs=0.01)


def test_picture_of_same_aspect_is_resized_bilinear(tmp_path):
    small = np.zeros((24, 32), np.uint8)
    small[:, 16:] = 255
    Image.fromarray(small, "L").save(tmp_path / "small.png")
    m = rasterize_mask(Mask("image", path=tmp_path / "small.png"), CANVAS)
    assert m.shape == (48, 64)
    assert m[:, :28].max() == 0.0 and m[:, 36:].min() == 1.0
    assert 0.0 < m[10, 31] < 1.0  # interpolated edge


def test_picture_of_other_aspect_is_refused_naming_both_sizes(tmp_path):
    Image.new("L", (50, 50), 255).save(tmp_path / "sq.png")
    with pytest.raises(MaskError, match=r"50×50.*64×48"):
        rasterize_mask(Mask("image", path=tmp_path / "sq.png"), CANVAS)


def test_missing_and_corrupt_files_raise_mask_error(tmp_path):
    with pytest.raises(MaskError, match="not found"):
        rasterize_mask(Mask("image", path=tmp_path / "nope.png"), CANVAS)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(MaskError, match="cannot decode bad.png"):
        rasterize_mask(Mask("image", path=tmp_path / "bad.png"), CANVAS)
    good = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64), np.uint8), "L").save(good)
    good.write_bytes(good.read_bytes()[:200])  # truncated in the middle of the pixel data
    with pytest.raises(MaskError, match="cannot decode cut.png"):
        rasterize_mask(Mask("image", path=good), CANVAS)


def png_header_only(path, width: int, height: int) -> None:
    """A PNG claiming width×height pixels with almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    png_header_only(bomb, 100_000, 100_000)  # 10^10 pixels: over our limit and Pillow's
    saved = Image.MAX_IMAGE_PIXELS

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "load", no_decoding)
        with pytest.raises(MaskError, match="over the limit"):
            rasterize_mask(Mask("image", path=bomb), CANVAS)
    assert Image.MAX_IMAGE_PIXELS == saved  # Pillow's global setting is restored
    with pytest.raises(MaskError, match="over the limit"):
        load_rgb(bomb, CANVAS)


def test_pixel_limit_is_read_from_defaults(tmp_path, monkeypatch):
    Image.new("L", (64, 48), 255).save(tmp_path / "m.png")
    monkeypatch.setattr(defaults, "MAX_MASK_IMAGE_PIXELS", 64 * 48 - 1)
    with pytest.raises(MaskError, match=f"64×48 = 3,072 pixels is over the limit of {64 * 48 - 1:,}"):
        rasterize_mask(Mask("image", path=tmp_path / "m.png"), CANVAS)
    monkeypatch.setattr(defaults, "MAX_MASK_IMAGE_PIXELS", 64 * 48)
    assert rasterize_mask(Mask("image", path=tmp_path / "m.png"), CANVAS).min() == 1.0


# --- label maps --------------------------------------------------------------------------------


def label_map(tmp_path, name="labels.png", size=(64, 48)):
    rgb = np.full((size[1], size[0], 3), 255, np.uint8)
    rgb[: size[1] // 4, : size[0] // 2] = (245, 158, 11)  # top-left eighth: amber
    rgb[size[1] // 2 :, :] = (22, 163, 74)  # bottom half: green
    Image.fromarray(rgb, "RGB").save(tmp_path / name)
    return tmp_path / name


def test_label_colour_selects_its_pixels(tmp_path):
    path = label_map(tmp_path)
    amber = rasterize_mask(Mask("label_map", path=path, color=(245, 158, 11)), CANVAS)
    assert amber[:12, :32].min() == 1.0 and amber.sum() == 12 * 32
    green = rasterize_mask(Mask("label_map", path=path, color=(22, 163, 74)), CANVAS)
    assert green[24:].min() == 1.0 and green.sum() == 24 * 64


def test_label_colour_tolerance(tmp_path):
    path = label_map(tmp_path)
    t = defaults.LABEL_COLOR_TOLERANCE
    near = rasterize_mask(Mask("label_map", path=path, color=(245 - t, 158 + t, 11)), CANVAS)
    assert near.sum() == 12 * 32
    with pytest.raises(MaskError):
        rasterize_mask(Mask("label_map", path=path, color=(245 - t - 1, 158, 11)), CANVAS)


def test_label_map_is_resized_nearest(tmp_path):
    path = label_map(tmp_path, "half.png", size=(32, 24))
    amber = rasterize_mask(Mask("label_map", path=path, color=(245, 158, 11)), CANVAS)
    assert set(np.unique(amber)) == {0.0, 1.0}  # no blended colours at the edges
    assert amber.sum() == 12 * 32


def test_absent_label_colour_names_it_and_lists_present_colours_most_common_first(tmp_path):
    path = label_map(tmp_path)
    with pytest.raises(MaskError) as info:
        rasterize_mask(Mask("label_map", path=path, color=(0, 0, 255)), CANVAS)
    assert "#0000ff" in str(info.value) and "labels.png" in str(info.value)
    hint = info.value.hint
    assert hint.index("#16a34a") < hint.index("#ffffff") < hint.index("#f59e0b")  # 50%, 37.5%, 12.5%
    assert "50.0%" in hint


def test_label_map_edit_is_seen_despite_the_cache(tmp_path):
    path = label_map(tmp_path)
    rasterize_mask(Mask("label_map", path=path, color=(245, 158, 11)), CANVAS)
    Image.new("RGB", (64, 48), (245, 158, 11)).save(path)
    import os

    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert rasterize_mask(Mask("label_map", path=path, color=(245, 158, 11)), CANVAS).sum() == 64 * 48


# --- arrays and background pictures ------------------------------------------------------------


def test_array_masks_are_checked_and_clipped():
    array = np.full((48, 64), 1.5, np.float64)
    out = rasterize_mask(Mask("array", array=array), CANVAS)
    assert out.dtype == np.float32 and out.max() == 1.0
    with pytest.raises(MaskError, match="expected 48×64"):
        rasterize_mask(Mask("array", array=np.zeros((10, 10))), CANVAS)


def test_load_rgb_returns_pixels_and_resizes_same_aspect(tmp_path):
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[:, 32:, 2] = 100
    Image.fromarray(rgb).save(tmp_path / "bg.png")
    out = load_rgb(tmp_path / "bg.png", CANVAS)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, rgb)
    Image.fromarray(rgb).resize((128, 96)).save(tmp_path / "big.png")
    big = load_rgb(tmp_path / "big.png", CANVAS)
    assert big.shape == (48, 64, 3) and abs(int(big[10, 10, 0]) - 200) <= 2
    with pytest.raises(MaskError, match="64×64"):
        Image.new("RGB", (64, 64)).save(tmp_path / "sq.png")
        load_rgb(tmp_path / "sq.png", CANVAS)


def test_load_rgb_puts_transparency_over_white(tmp_path):
    Image.new("RGBA", (64, 48), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert load_rgb(tmp_path / "clear.png", CANVAS).min() == 255


@pytest.mark.parametrize("mask", [Mask("rect", coords=(90, 50, 20, 20)), Mask("ellipse", coords=(95, 55, 10, 8)),
                                  Mask("polygon", coords=(90, 50, 110, 50, 100, 70))])
def test_a_shape_past_the_edge_of_a_wrapped_canvas_comes_back_at_the_other_edge(mask):
    """On a canvas that wraps both ways a shape is the same shape wherever it lies: what passes the right
    (bottom) edge is drawn at the left (top), as if the canvas were rolled under it."""
    wrapped = rasterize_mask(mask, Canvas(100, 64, "both"))
    big = rasterize_mask(mask, Canvas(200, 128))  # the same shape on a canvas large enough to hold it
    folded = big[:64, :100] + big[64:, :100] + big[:64, 100:] + big[64:, 100:]
    assert np.allclose(wrapped, np.clip(folded, 0, 1), atol=1e-6)
    assert wrapped[:, :5].sum() > 0 and rasterize_mask(mask, Canvas(100, 64))[:, :5].sum() == 0
    if mask.kind == "rect":  # fractions move by whole canvases too
        fraction = Mask("rect", coords=(0.9, 50 / 64, 0.2, 20 / 64), fractional=True)
        assert np.allclose(rasterize_mask(fraction, Canvas(100, 64, "both")), wrapped, atol=1e-5)
