"""Draw the picture assets of the example scenes (deterministic; rerun after editing, commit the output).

    python scenes/make_assets.py

palette-layout.png: the label map of palette.yaml, flat colours without anti-aliasing so every pixel
is exactly one region's colour.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT = 768, 512
SKY = "#ffffff"  # no region: the background prompt paints it
HILLS, RIVER, CASTLE, BALLOON = "#16a34a", "#2563eb", "#78716c", "#f59e0b"


def palette_layout() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), SKY)
    draw = ImageDraw.Draw(image)
    ridge = [(x, 300 + 30 * math.sin(x / 120) - 40 * math.exp(-(((x - 520) / 110) ** 2))) for x in range(0, WIDTH + 1, 16)]
    draw.polygon([*ridge, (WIDTH, HEIGHT), (0, HEIGHT)], fill=HILLS)
    river = [(360 + 90 * math.sin(y / 45), y) for y in range(330, HEIGHT + 1, 8)]
    draw.polygon([*[(x - 12 - (y - 330) * 0.25, y) for x, y in river],
                  *[(x + 12 + (y - 330) * 0.25, y) for x, y in reversed(river)]], fill=RIVER)
    draw.rectangle([470, 170, 580, 270], fill=CASTLE)  # keep
    for left in (450, 505, 560):  # towers with a battlement gap between them
        draw.rectangle([left, 130, left + 40, 270], fill=CASTLE)
    draw.ellipse([120, 60, 220, 170], fill=BALLOON)
    draw.polygon([(150, 165), (190, 165), (182, 195), (158, 195)], fill=BALLOON)  # basket
    return image


if __name__ == "__main__":
    palette_layout().save(HERE / "palette-layout.png", optimize=True)
    print(f"wrote {HERE / 'palette-layout.png'}")
