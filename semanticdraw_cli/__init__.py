"""semanticdraw: render large images from regional prompts with few-step diffusion models."""

__version__ = "0.1.0"
