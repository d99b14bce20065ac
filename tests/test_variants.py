"""Prompt variants `{a|b|c}`: picked per image, every combination with `--variants all`, escapes, limits."""

import json

import pytest
from typer.testing import CliRunner

from semanticdraw_cli import variants
from semanticdraw_cli.cli.app import app
from semanticdraw_cli.outputs import read_embedded
from scene_factory import make_scene, rect, region

runner = CliRunner()


def scene_of(*prompts, images=1):
    regions = [region(p, rect(32 * i, 0, 32, 32), name=f"r{i}") for i, p in enumerate(prompts)]
    return make_scene(128, 96, regions, images=images)


def test_groups_and_escapes():
    text = r"a {red|blue} fox \{not|a group\} {big|small|tiny}"
    assert variants.groups(text) == [["red", "blue"], ["big", "small", "tiny"]]
    assert variants.choose(text, [1, 2]) == r"a blue fox \{not|a group\} tiny"
    assert variants.plain(variants.choose(text, [1, 2])) == "a blue fox {not|a group} tiny"
    assert variants.groups(r"{a\|b|c}") == [[r"a\|b", "c"]]


def test_picks_are_deterministic_per_seed_and_region_and_vary_between_seeds():
    scene = scene_of("a {red|green|blue|white} cat", "a {red|green|blue|white} cat", images=12)
    picked = [s.regions for _, s in variants.expand([("s", scene)], "pick")]
    again = [s.regions for _, s in variants.expand([("s", scene)], "pick")]
    assert picked == again
    assert len(picked) == 12 and all("{" not in r.prompt for regions in picked for r in regions)
    assert len({regions[0].prompt for regions in picked}) > 1  # the seed picks
    assert any(regions[0].prompt != regions[1].prompt for regions in picked)  # so does the region


def test_all_renders_every_combination_once_per_seed():
    scene = scene_of("a {red|blue} cat", "{one|two|three} dogs", images=2)
    expanded = [s for _, s in variants.expand([("s", scene)], "all")]
    assert len(expanded) == 12
    for seed in (scene.sampler.seed, scene.sampler.seed + 1):
        mine = [s for s in expanded if s.sampler.seed == seed]
        assert [s.variant for s in mine] == list(range(6))
        assert len({(s.regions[0].prompt, s.regions[1].prompt) for s in mine}) == 6


def test_a_scene_without_variants_is_left_as_it_is():
    scene = scene_of("a cat", images=3)
    assert variants.expand([("s", scene)], "all") == [("s", scene)]


def test_more_than_1024_combinations_exit_2_naming_them(tmp_path):
    scene = tmp_path / "many.yaml"
    options = "|".join(str(n) for n in range(1025))
    scene.write_text(f"canvas: {{width: 128, height: 96}}\nregions:\n  - {{prompt: 'a {{{options}}} cat', "
                     "mask: {rect: [0, 0, 64, 64]}}\n")
    result = runner.invoke(app, ["render", str(scene), "--model", "tiny", "--variants", "all", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "1025 prompt combinations" in result.output and "many.yaml" in result.output


def test_an_unknown_variants_mode_exits_2_naming_it(tmp_path):
    scene = tmp_path / "one.yaml"
    scene.write_text("canvas: {width: 128, height: 96}\nregions:\n  - {prompt: a cat, mask: {rect: [0, 0, 64, 64]}}\n")
    result = runner.invoke(app, ["render", str(scene), "--model", "tiny", "--variants", "some", "-o", str(tmp_path)])
    assert result.exit_code == 2 and "--variants 'some'" in result.output


@pytest.mark.slow
def test_all_writes_numbered_files_that_embed_and_report_the_chosen_prompt(tmp_path):
    scene = tmp_path / "pets.yaml"
    scene.write_text("canvas: {width: 128, height: 96}\nsampler: {seed: 5}\n"
                     "regions:\n  - {name: pet, prompt: 'a {cat|dog}', mask: {rect: [0, 0, 64, 64]}}\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", str(scene), "--model", "tiny", "--variants", "all", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    for k, animal in enumerate(["a cat", "a dog"]):
        assert f"prompt: {animal}\n" in read_embedded(out / f"pets-5-v{k}.png")[0]
        assert json.loads((out / f"pets-5-v{k}.json").read_text())["prompts"] == {"pet": animal}
