"""Devices: one that this machine lacks is named before anything loads."""

import pytest
import torch

from semanticdraw_cli import devices
from semanticdraw_cli.errors import RenderError


@pytest.mark.parametrize("device", ["mps", "cuda"])
def test_a_device_this_machine_lacks_is_named(device):
    if (device == "mps" and devices.mps_available()) or (device == "cuda" and torch.cuda.is_available()):
        pytest.skip(f"{device} is available here")
    assert "is not available here" in devices.device_problem(device)
    with pytest.raises(RenderError, match=f"device '{device}'"):
        devices.pick_device(device)
