"""What every adapter shares: checkpoint families from model_index.json, devices."""

import pytest
import torch

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families import common


def test_a_list_as_pipeline_class_name_is_a_clean_refusal(tmp_path):
    (tmp_path / "model_index.json").write_text('{"_class_name": ["StableDiffusionPipeline"], "unet": ["diffusers", "UNet2DConditionModel"]}')
    with pytest.raises(RenderError, match=r"model_index.json has _class_name \['StableDiffusionPipeline'\]"):
        common.refuse_other_family(str(tmp_path), "sd15")


@pytest.mark.parametrize("device", ["mps", "cuda"])
def test_a_device_this_machine_lacks_is_named(device):
    if (device == "mps" and common.mps_available()) or (device == "cuda" and torch.cuda.is_available()):
        pytest.skip(f"{device} is available here")
    assert "is not available here" in common.device_problem(device)
    with pytest.raises(RenderError, match=f"device '{device}'"):
        common.pick_device(device)
