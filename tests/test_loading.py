"""Loading checkpoints: a folder's family comes from its model_index.json, refused cleanly when malformed."""

import pytest

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import loading

def test_a_list_as_pipeline_class_name_is_a_clean_refusal(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": ["StableDiffusionPipeline"], "unet": ["diffusers", "UNet2DConditionModel"]}')
    with pytest.raises(RenderError, match=r"model_index.json has _class_name \['StableDiffusionPipeline'\]"):
        loading.refuse_other_family(str(tmp_path), "sd15")
