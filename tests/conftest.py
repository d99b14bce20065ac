"""Shared test setup: no network, presets built once per session into a private cache."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("SEMANTICDRAW_CACHE", os.path.join(tempfile.gettempdir(), "semanticdraw-test-cache"))
