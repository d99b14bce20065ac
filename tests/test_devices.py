"""Devices and dtypes: a device this machine lacks is named before anything loads; `auto` follows the family's
CUDA dtype where the card supports it."""

import pytest
import torch

from semanticdraw_cli import devices
from semanticdraw_cli.devices import pick_dtype
from semanticdraw_cli.errors import RenderError


@pytest.mark.parametrize("device", ["mps", "cuda"])
def test_a_device_this_machine_lacks_is_named(device):
    if (device == "mps" and devices.mps_available()) or (device == "cuda" and torch.cuda.is_available()):
        pytest.skip(f"{device} is available here")
    assert "is not available here" in devices.device_problem(device)
    with pytest.raises(RenderError, match=f"device '{device}'"):
        devices.pick_device(device)


def test_auto_is_float32_off_cuda_whatever_the_family_asks():
    assert pick_dtype(None, torch.device("cpu"), "bfloat16") == torch.float32
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32


@pytest.mark.parametrize("bf16, asked, expected", [(True, "bfloat16", torch.bfloat16), (False, "bfloat16", torch.float16),
                                                   (True, "float16", torch.float16)])
def test_auto_on_cuda_takes_the_family_dtype_if_the_card_has_it(monkeypatch, bf16, asked, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert pick_dtype(None, torch.device("cuda"), asked) == expected


def test_an_explicit_dtype_wins_and_a_bad_one_is_refused():
    assert pick_dtype("float16", torch.device("cuda"), "bfloat16") == torch.float16
    with pytest.raises(RenderError, match="unknown dtype 'int8'"):
        pick_dtype("int8", torch.device("cpu"))
