"""Layered drawings (.psd, .ora) as scenes: layer -> region mapping, background, settings, import, bad input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pytest
from PIL import Image

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import SceneError
from semanticdraw_cli.layered_files import read_document
from semanticdraw_cli.layers import split_name

# --- drawing helpers: a layer spec is (name, image, left, top) with optional visible=False; a group is
# ("group", name, [specs], visible). Specs are listed bottom first, as the layers lie.


def blob(size, color=(255, 0, 0), alpha=255) -> Image.Image:
    return Image.new("RGBA", size, (*color, alpha))


def disc(size) -> Image.Image:
    """A soft-edged shape with alpha from 0 to 255."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
    alpha = np.clip((1.2 - r) * 255, 0, 255).astype(np.uint8)
    rgba = np.dstack([np.full((h, w), 30, np.uint8), np.full((h, w), 90, np.uint8), np.full((h, w), 200, np.uint8), alpha])
    return Image.fromarray(rgba, "RGBA")


def layer(name, image, left=0, top=0, visible=True):
    return ("layer", name, image, left, top, visible)


def group(name, children, visible=True):
    return ("group", name, children, visible)


def make_psd(path: Path, size, specs, mode="RGBA", depth=8) -> Path:
    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer

    psd = PSDImage.new(mode, size, depth=depth)

    def add(parent, items):
        for spec in items:
            if spec[0] == "group":
                _, name, children, visible = spec
                g = parent.create_group(name=name)
                add(g, children)
                g.visible = visible
            else:
                _, name, image, left, top, visible = spec
                pixel = PixelLayer.frompil(image, parent, name=name, left=left, top=top)
                pixel.visible = visible

    add(psd, specs)
    psd.save(path)
    return path


def make_ora(path: Path, size, specs, mimetype="image/openraster", files=None) -> Path:
    pngs: dict[str, bytes] = {}

    def xml(items):
        out = []
        for spec in reversed(items):  # stack.xml lists the top layer first
            visibility = "visible" if spec[-1] else "hidden"
            if spec[0] == "group":
                _, name, children, _ = spec
                out.append(f"<stack name={quoteattr(name)} visibility='{visibility}'>{xml(children)}</stack>")
            else:
                _, name, image, left, top, _ = spec
                src = f"data/layer{len(pngs)}.png"
                buffer = io.BytesIO()
                image.save(buffer, "PNG")
                pngs[src] = buffer.getvalue()
                out.append(
                    f"<layer name={quoteattr(name)} src='{src}' x='{left}' y='{top}' visibility='{visibility}' opacity='1.0'/>"
                )
        return "".join(out)

    stack = f"<?xml version='1.0' encoding='UTF-8'?><image version='0.0.5' w='{size[0]}' h='{size[1]}'><stack>{xml(specs)}</stack></image>"
    with zipfile.ZipFile(path, "w") as archive:
        if mimetype is not None:
            archive.writestr(zipfile.ZipInfo("mimetype"), mimetype, compress_type=zipfile.ZIP_STORED)
        archive.writestr("stack.xml", stack, compress_type=zipfile.ZIP_DEFLATED)
        for src, data in {**pngs, **(files or {})}.items():
            archive.writestr(src, data)
    return path


def make(kind: str, path: Path, size, specs, **kwargs) -> Path:
    return (make_psd if kind == "psd" else make_ora)(path.with_suffix("." + kind), size, specs, **kwargs)


KINDS = ["psd", "ora"]


def problems_of(excinfo) -> str:
    return "\n".join(str(p) for p in excinfo.value.problems)


# --- reading layers ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_layers_read_bottom_first_with_offsets(tmp_path, kind):
    path = make(kind, tmp_path / "art", (64, 32), [layer("sky", blob((64, 32))), layer("sun", disc((10, 6)), 40, 3)])
    document = read_document(path)
    assert (document.width, document.height) == (64, 32)
    assert [x.name for x in document.layers] == ["sky", "sun"]
    sun = document.layers[1]
    assert sun.box == (40, 3, 50, 9)
    alpha = sun.alpha_on_canvas(64, 32)
    expected = np.zeros((32, 64), np.float32)
    expected[3:9, 40:50] = np.asarray(disc((10, 6)))[..., 3] / 255
    np.testing.assert_allclose(alpha, expected, atol=1 / 255)
    assert document.layers[0].covers(64, 32) and not sun.covers(64, 32)


@pytest.mark.parametrize("kind", KINDS)
def test_hidden_layers_and_groups_are_skipped_and_groups_flatten(tmp_path, kind):
    specs = [
        layer("a", blob((8, 8))),
        layer("hidden", blob((8, 8)), visible=False),
        group("trees", [layer("oak", blob((8, 8)), 8), group("inner", [layer("pine", blob((8, 8)), 16)])]),
        group("off", [layer("gone", blob((8, 8)))], visible=False),
        layer("top", blob((8, 8)), 24),
    ]
    document = read_document(make(kind, tmp_path / "art", (32, 16), specs))
    assert [x.name for x in document.layers] == ["a", "oak", "pine", "top"]
    assert [x.where for x in document.layers] == ["a", "trees/oak", "trees/inner/pine", "top"]


@pytest.mark.parametrize("kind", KINDS)
def test_layers_partly_outside_are_clipped(tmp_path, kind):
    document = read_document(make(kind, tmp_path / "art", (16, 16), [layer("edge", blob((8, 8)), -4, 12)]))
    edge = document.layers[0]
    assert edge.box == (0, 12, 4, 16)
    alpha = edge.alpha_on_canvas(16, 16)
    assert alpha.sum() == 16 and alpha[12:, :4].min() == 1


def test_split_name():
    assert split_name("a large tree") == ("a large tree", "a large tree")
    assert split_name("sun: the sun, glowing") == ("sun", "the sun, glowing")
    assert split_name("photo: 16:9 frame") == ("photo", "16:9 frame")
    assert split_name(": only a prompt") == ("only a prompt", "only a prompt")
    assert split_name("sun:") == ("sun", "")


@pytest.mark.parametrize(("mode", "depth"), [("L", 8), ("RGB", 16)])
def test_psd_grayscale_and_16_bit_are_converted(tmp_path, mode, depth):
    path = make_psd(tmp_path / "art.psd", (16, 8), [layer("sun", blob((8, 8), alpha=128), 4)], mode=mode, depth=depth)
    alpha = read_document(path).layers[0].alpha_on_canvas(16, 8)
    assert alpha[:, 4:12].min() > 0.45 and alpha[:, :4].max() == 0


# --- bad drawings: one clear problem each, never a traceback ------------------------------------


def bad_drawings(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words the problem must contain)."""
    good = make_psd(tmp_path / "good.psd", (32, 16), [layer("sun", blob((8, 8)))]).read_bytes()
    cases = {}

    def put(name, data, words):
        path = tmp_path / name
        path.write_bytes(data)
        cases[name] = (path, words)

    put("garbage.psd", b"not a photoshop file at all" * 10, "not a readable PSD file")
    put("truncated.psd", good[:-10], "the file is truncated")
    put("cut.psd", good[:60], "not a readable PSD file")
    put("notzip.ora", b"plain text", "not a zip archive")
    ora = lambda name, **kw: make_ora(tmp_path / name, (32, 16), [layer("sun", blob((8, 8)))], **kw)  # noqa: E731
    with zipfile.ZipFile(tmp_path / "nostack.ora", "w") as archive:
        archive.writestr("mimetype", "image/openraster")
    cases["nostack.ora"] = (tmp_path / "nostack.ora", "no stack.xml")
    cases["mimetype.ora"] = (ora("mimetype.ora", mimetype="application/x-krita"), "application/x-krita")
    cases["badpng.ora"] = (ora("badpng.ora", files={"data/layer0.png": b"\x89PNG broken"}), "not a readable PNG")
    cases["outside.psd"] = (
        make_psd(tmp_path / "outside.psd", (32, 16), [layer("ok", blob((8, 8))), layer("lost", blob((8, 8)), 40, 0)]),
        "'lost': lies entirely outside the 32x16 canvas",
    )
    cases["outside.ora"] = (
        make_ora(tmp_path / "outside.ora", (32, 16), [layer("lost", blob((8, 8)), 0, -20)]),
        "'lost': lies entirely outside",
    )
    cases["hidden.psd"] = (make_psd(tmp_path / "hidden.psd", (32, 16), [layer("a", blob((8, 8)), visible=False)]), "no visible layers")
    cases["empty.ora"] = (make_ora(tmp_path / "empty.ora", (32, 16), []), "no visible layers")
    cases["cmyk.psd"] = (make_psd(tmp_path / "cmyk.psd", (32, 16), [layer("a", blob((8, 8)))], mode="CMYK"), "colour mode CMYK")
    cases["deep.psd"] = (make_psd(tmp_path / "deep.psd", (32, 16), [layer("a", blob((8, 8)))], mode="RGB", depth=32), "32 bits")
    cases["odd.psd"] = (make_psd(tmp_path / "odd.psd", (30, 17), [layer("a", blob((8, 8)))]), "resize the canvas to 32x16")
    cases["odd.ora"] = (make_ora(tmp_path / "odd.ora", (1001, 603), [layer("a", blob((8, 8)))]), "1000x600")
    side = defaults.MAX_CANVAS_SIDE + 8
    cases["huge.ora"] = (make_ora(tmp_path / "huge.ora", (side, 8), [layer("a", blob((8, 8)))]), "too large")
    return cases


def test_every_bad_drawing_is_one_clear_problem(tmp_path):
    for name, (path, words) in bad_drawings(tmp_path).items():
        with pytest.raises(SceneError) as excinfo:
            read_document(path)
        text = problems_of(excinfo)
        assert str(path) in text, name
        assert words in text, (name, text)


def test_too_many_layers_refused_before_decoding(tmp_path):
    specs = [layer(f"r{i}", blob((8, 8))) for i in range(defaults.MAX_REGIONS + 2)]
    with pytest.raises(SceneError) as excinfo:
        read_document(make_ora(tmp_path / "many.ora", (16, 16), specs))
    assert f"at most {defaults.MAX_REGIONS} regions" in problems_of(excinfo)


def test_all_layer_problems_reported_together(tmp_path):
    specs = [layer("a", blob((8, 8)), 100, 0), layer("b", blob((8, 8)), 0, 100)]
    with pytest.raises(SceneError) as excinfo:
        read_document(make_psd(tmp_path / "two.psd", (32, 16), specs))
    assert len(excinfo.value.problems) == 2
