"""The registry is the one list of families: what shares a pipeline class, and the docs' family tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from semanticdraw_cli.families import registry

ROOT = Path(__file__).resolve().parents[1]


def first_cells(text: str, header: str) -> list[str]:
    """The `name` in the first cell of each row of the table whose header row starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(re.match(r"\| `([^`]+)`", line).group(1))
    return rows


def test_families_of_pipeline_returns_every_candidate_by_class_else_by_components():
    by_class = registry.families_of_pipeline({"_class_name": "StableDiffusionPipeline"})
    assert set(by_class) == {name for name, spec in registry.families().items()
                             if spec.pipeline_class == "StableDiffusionPipeline"} and len(by_class) >= 2
    sd3_parts = {part: ["x", "y"] for part in registry.family("sd3").components}
    assert registry.families_of_pipeline({"_class_name": "MyMergedPipeline", **sd3_parts})[0] == "sd3"
    assert registry.families_of_pipeline({"_class_name": "Unknown"}) == ()


@pytest.mark.parametrize("document, header", [
    ("docs/scene-format.md", "| Family | Default checkpoint"),
    ("docs/families.md", "| family | networks"),
    ("README.md", "| `model.family` |"),
])
def test_each_family_table_lists_the_registered_families(document, header):
    assert first_cells((ROOT / document).read_text(), header) == list(registry.families())


def test_the_family_comparison_and_the_family_key_name_the_registered_families():
    families = list(registry.families())
    columns = (ROOT / "docs/families.md").read_text().split("\n| | ", 1)[1].split("\n", 1)[0]
    assert re.findall(r"`([^`]+)`", columns) == families
    key = next(line for line in (ROOT / "docs/scene-format.md").read_text().splitlines() if line.startswith("| `family` |"))
    assert re.findall(r"`([^`]+)`", re.split(r"(?<!\\)\|", key)[2]) == families  # cells split at unescaped pipes
