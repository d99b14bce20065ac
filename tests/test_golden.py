"""`render --golden`: each image against its golden, exit 5 beyond the tolerance with the images still written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semanticdraw_cli.families import registry

from asset_builds import invoke


@pytest.fixture
def copy(rendered_assets, tmp_path, monkeypatch) -> Path:
    """A copy of the rendered folder; every render below skips its images (--changed), so no model loads."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(registry, "load_adapter", refuse)
    shutil.copytree(rendered_assets, tmp_path / "work")
    return tmp_path / "work"


def golden_render(folder: Path, *extra: object):
    scenes = sorted((folder / "scenes").glob("*.yaml"))
    return invoke("render", *scenes, "-o", folder / "out", "--changed", "--device", "cpu", "--golden",
                  folder / "golden", *extra)


def test_update_then_compare_passes(copy):
    result = golden_render(copy, "--update-golden")
    assert result.exit_code == 0, result.output
    assert (copy / "golden" / "a-5.png").read_bytes() == (copy / "out" / "a-5.png").read_bytes()
    result = golden_render(copy, "--tolerance", "0")
    assert result.exit_code == 0, result.output
    assert "2 image(s) within the tolerance" in result.output


def test_a_golden_beyond_the_tolerance_exits_5_naming_the_image_and_region(copy):
    assert golden_render(copy, "--update-golden").exit_code == 0
    golden = copy / "golden" / "b-5.png"
    pixels = np.asarray(Image.open(golden)).copy()
    pixels[20:40, 30:50] = 255 - pixels[20:40, 30:50]  # inside the fox's mask
    Image.fromarray(pixels).save(golden)
    result = golden_render(copy)
    assert result.exit_code == 5, result.output
    assert "1 of 2 image(s) differ" in result.output and "b-5.png: fox differs by" in result.output
    assert (copy / "out" / "b-5.png").exists()
    assert golden_render(copy, "--tolerance", "255").exit_code == 0


def test_a_missing_golden_exits_5(copy):
    result = golden_render(copy)
    assert result.exit_code == 5 and "no golden" in result.output and "--update-golden" in result.output


def test_update_golden_never_writes_over_a_file_a_scene_reads(copy):
    scenes = copy / "scenes"
    (scenes / "a.png").rename(scenes / "a-5.png")  # the mask has the name of a's golden
    (scenes / "a.yaml").write_text((scenes / "a.yaml").read_text().replace("a.png", "a-5.png"))
    before = (scenes / "a-5.png").read_bytes()
    result = invoke("render", scenes / "a.yaml", "-o", copy / "out", "--changed", "--golden", scenes, "--update-golden")
    assert result.exit_code == 2, result.output
    assert "a-5.png: the output would overwrite the mask of region 'sun'" in result.output
    assert (scenes / "a-5.png").read_bytes() == before


@pytest.mark.parametrize("args, named", [
    (["--tolerance", "1"], "--tolerance needs --golden DIR"),
    (["--update-golden"], "--update-golden needs --golden DIR"),
    (["--golden", "OUT"], "is the output folder"),
    (["--golden", "G", "--tolerance", "-1"], "--tolerance -1.0: expected"),
    (["--progress", "fancy"], "--progress 'fancy': expected one of"),
])
def test_bad_ci_options_exit_2_naming_the_option(copy, args, named):
    args = [str(copy / "out") if arg == "OUT" else str(copy / "g") if arg == "G" else arg for arg in args]
    result = invoke("render", copy / "scenes" / "a.yaml", "-o", copy / "out", "--changed", *args)
    assert result.exit_code == 2 and named in result.output, result.output
