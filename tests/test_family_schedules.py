"""Which scheduler a model samples with comes from the resolved model, then the checkpoint, then the family."""

import pytest

from semanticdraw_cli.errors import RenderError
from semanticdraw_cli.families.schedules import discrete_step_table, scheduler_kind
from semanticdraw_cli.scene.types import Accelerator, Model


@pytest.mark.parametrize("family, accelerator, own, kind", [
    ("sd15", Accelerator("lcm"), "PNDMScheduler", "lcm"),  # a named accelerator brings its own
    ("sd15", Accelerator("lora", "me/x", scheduler="euler-trailing"), "LCMScheduler", "euler-trailing"),
    ("sd15", Accelerator("none"), "LCMScheduler", "lcm"),  # a merged LCM checkpoint
    ("sd15", Accelerator("lora", "me/x"), "PNDMScheduler", "ddim"),  # the family's own
    ("sdxl", Accelerator("none"), "EulerDiscreteScheduler", "euler-trailing"),
    ("sdxl", Accelerator("lightning"), "LCMScheduler", "euler-trailing"),
    ("sd3", Accelerator("none"), "LCMScheduler", "flow-euler"),  # sd3 has no LCM sampling
])
def test_scheduler_kind(family, accelerator, own, kind):
    assert scheduler_kind(Model(family, "tiny", accelerator), own) == kind


def test_a_kind_without_a_discrete_table_is_refused():
    with pytest.raises(RenderError, match="cannot sample with 'flow-euler'"):
        discrete_step_table("flow-euler", {}, None)


def test_a_named_accelerator_is_plain_data_and_its_scheduler_is_resolved_where_it_is_used():
    """Accelerator (scene/types.py) reads no registry when made; the scheduler of a named one is looked up by
    the family code that samples with it."""
    named = Accelerator("lightning")
    assert named.scheduler is None
    assert scheduler_kind(Model("sdxl", "tiny", named), "EulerDiscreteScheduler") == "euler-trailing"
