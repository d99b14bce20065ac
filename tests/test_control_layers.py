"""Control layers of a layered drawing: a `control` layer is the picture of a settings' control entry, not a region."""

from __future__ import annotations

import pytest

from semanticdraw_cli.errors import SceneError
from semanticdraw_cli.scene.layers import load_layered_scene
from drawings import KINDS, blob, layer, make

SIZE = (64, 32)


def specs(*controls):
    return [layer("fox: a red fox", blob((32, 32), (200, 60, 20))), *controls]


@pytest.mark.parametrize("kind", KINDS)
def test_a_control_layer_is_its_entrys_picture_not_a_region(tmp_path, kind):
    lines = layer("control", blob((16, 32), (255, 255, 255)), left=40)  # white on the right, transparent elsewhere
    path = make(kind, tmp_path / "art", SIZE, specs(lines))
    (tmp_path / "art.yaml").write_text("model: {checkpoint: tiny}\ncontrol: [{model: tiny, weight: 0.5}]\n")
    scene = load_layered_scene(path)
    assert [r.name for r in scene.regions] == ["fox"]
    (entry,) = scene.control
    assert (entry.model, entry.weight, entry.image) == ("tiny", 0.5, None)
    assert entry.image_array.shape == (32, 64, 3)
    assert (entry.image_array == 255).all()  # white lines over white: the layer as a painter sees it


def test_control_model_picks_the_entry_with_that_model(tmp_path):
    path = make("ora", tmp_path / "art", SIZE, specs(layer("control: small", blob((64, 32), (0, 0, 0)))))
    (tmp_path / "art.yaml").write_text(
        "model: {checkpoint: tiny}\ncontrol: [{model: tiny, image: edges.png}, {model: small, weight: 0.7}]\n")
    from PIL import Image

    Image.new("RGB", SIZE, "white").save(tmp_path / "edges.png")
    scene = load_layered_scene(path)
    first, second = scene.control
    assert first.image == tmp_path / "edges.png" and first.image_array is None
    assert second.model == "small" and second.weight == 0.7 and (second.image_array == 0).all()


def test_a_control_layer_without_an_entry_is_refused_naming_the_layer(tmp_path):
    path = make("psd", tmp_path / "art", SIZE, specs(layer("control: depth", blob((64, 32)))))
    (tmp_path / "art.yaml").write_text("model: {checkpoint: tiny}\n")
    with pytest.raises(SceneError) as caught:
        load_layered_scene(path)
    text = "\n".join(str(p) for p in caught.value.problems)
    assert "layer 'control: depth' is a control picture" in text and "no control entry with model 'depth'" in text
