"""Shared test setup: no network, presets built once per session into a private cache."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("SEMANTICDRAW_CACHE", os.path.join(tempfile.gettempdir(), "semanticdraw-test-cache"))

import pytest  # noqa: E402  (after the environment above, which the imports below must see)


@pytest.fixture(scope="session")
def rendered_assets(tmp_path_factory):
    """The two 64x64 scenes of `asset_builds`, rendered once (seeds 5 and 6) into out/; tests work on copies."""
    from asset_builds import invoke, write_scenes

    folder = tmp_path_factory.mktemp("assets")
    result = invoke("render", *write_scenes(folder), "-o", folder / "out", "--images", "2", "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    return folder
