"""`check` (exit 4 listing each stale output and why, 0 when all are fresh) and `compare` (per-region differences)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from asset_builds import invoke, write_mask


@pytest.fixture
def copy(rendered_assets, tmp_path) -> Path:
    shutil.copytree(rendered_assets, tmp_path / "work")
    return tmp_path / "work"


def check(folder: Path, *extra: object):
    scenes = sorted((folder / "scenes").glob("*.yaml"))
    return invoke("check", *scenes, "-o", folder / "out", "--device", "cpu", "--images", "2", *extra)


def test_check_exits_0_when_every_output_is_fresh(copy):
    result = check(copy)
    assert result.exit_code == 0, result.output
    assert "4 output(s) fresh" in result.output


def test_check_exits_4_listing_each_stale_output_and_the_input_that_changed(copy):
    write_mask(copy / "scenes" / "b.png", (0, 0, 30, 30))
    (copy / "out" / "a-6.png").unlink()
    result = check(copy)
    assert result.exit_code == 4, result.output
    assert "3 of 4 output(s) missing or stale" in result.output
    assert "a-6.png: a-6.png is missing" in result.output
    assert "b-5.png: b.png changed" in result.output and "b-6.png: b.png changed" in result.output
    assert "a-5.png" not in result.output


def test_check_json_and_options_that_change_the_key(copy):
    result = check(copy, "--json", "--set", "regions[0].prompt=a moon", "--dtype", "float16")
    assert result.exit_code == 4
    found = json.loads(result.stdout)
    assert len(found) == 4 and not any(entry["fresh"] for entry in found)
    assert found[0]["reasons"] == ["scene fields changed: regions[0].prompt", "dtype float32 -> float16"]


def test_check_judges_gpu_renders_on_a_machine_without_one(copy):
    result = check(copy, "--device", "cuda", "--dtype", "float16")
    assert result.exit_code == 4 and "device cpu -> cuda; dtype float32 -> float16" in result.output, result.output


def test_check_refuses_a_misspelt_device(copy):
    result = check(copy, "--device", "gpu")
    assert result.exit_code == 2 and "--device 'gpu'" in result.output


def test_compare_identical_images_gives_zero_difference(copy):
    png = copy / "out" / "a-5.png"
    result = invoke("compare", png, png, "--scene", copy / "scenes" / "a.yaml", "--json")
    assert result.exit_code == 0, result.output
    areas = json.loads(result.stdout)["areas"]
    assert [area["name"] for area in areas] == ["sun", "background", "image"]
    assert all(area["mean_abs"] == 0.0 and area["psnr"] is None and area["ssim"] == 1.0 and area["equal"]
               for area in areas)


def test_compare_two_seeds_differs_and_prints_a_table(copy):
    result = invoke("compare", copy / "out" / "a-5.png", copy / "out" / "a-6.png", "--scene",
                    copy / "scenes" / "a.yaml")
    assert result.exit_code == 0, result.output
    assert "sun" in result.output and "background" in result.output and "inf" not in result.output


def test_compare_refuses_pictures_of_two_sizes(copy, tmp_path):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (32, 32)).save(small)
    result = invoke("compare", copy / "out" / "a-5.png", small)
    assert result.exit_code == 2 and "is 64x64 but" in result.output and "small.png is 32x32" in result.output
