"""What can go wrong reaching a model: not on the hub or not cached, a hub that does not answer, a refused pickle
file, the libraries' chatter while loading.

Messages say what to do, naming the hub tool that is installed; a local path is never offered for download.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

from semanticdraw_cli import defaults
from semanticdraw_cli.errors import RenderError


def hub_command() -> str:
    """The hub's command-line tool on PATH: `hf` (huggingface_hub 0.34 and later), else `huggingface-cli`."""
    return "huggingface-cli" if shutil.which("hf") is None and shutil.which("huggingface-cli") else "hf"


def missing_model_error(what: str, source: str, error: Exception, filename: str | None = None) -> RenderError:
    """A model that cannot be found: say what was tried and what to do (a local path is never 'downloaded')."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if os.path.isabs(os.path.expanduser(source)) or os.path.exists(source):
        kind = "a diffusers folder (with model_index.json)" if what == "model" else "a LoRA folder"
        hint = f"check that {source} is {kind} or a .safetensors file"
        return RenderError(f"cannot load {what} {source!r}: {first_line}\nwhat to do: {hint}")
    tool = hub_command()
    download = f"{tool} download {source}" + (f" {filename}" if filename else "")
    login = f"{tool} auth login" if tool == "hf" else f"{tool} login"
    offline = why_offline()
    hint = (
        f"{offline}, so nothing is downloaded: download it once with network access "
        f"(`{download}`) or point to a local folder / .safetensors file"
        if offline
        else f"check the id, your network and `{login}` for gated models; "
        "or render offline with a built-in preset: --model tiny"
    )
    return RenderError(f"cannot load {what} {source!r}: {first_line}\nwhat to do: {hint}")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE is set: nothing is downloaded, only the local cache is read."""
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def is_hub_id(source: str) -> bool:
    """`owner/name` that names no local file or folder."""
    return source.count("/") == 1 and not os.path.exists(os.path.expanduser(source))


def why_offline() -> str | None:
    """Why nothing can be downloaded now: HF_HUB_OFFLINE, or a hub that does not answer; None when it can."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    from huggingface_hub import constants

    reason = _unreachable(constants.ENDPOINT)
    return None if reason is None else f"the hub at {constants.ENDPOINT} cannot be reached ({reason})"


@functools.lru_cache(maxsize=4)
def _unreachable(endpoint: str) -> str | None:
    """One request to the hub through huggingface_hub's own session (its proxies and certificates), with a
    short timeout: without it a hub id that is not cached costs ~25 s of retries per file before failing."""
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=defaults.HUB_PROBE_SECONDS)
    except Exception as error:  # any answer, even an error status, means the hub is reachable
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return None


def readable_source(source: str) -> str:
    """`source` as a loader should read it: a hub id that cannot be downloaded now (offline, or the hub does
    not answer) becomes its cached folder, so nothing waits on the network; FileNotFoundError when it is not
    cached (`missing_model_error` then says why nothing is downloaded). Paths and reachable hub ids come back
    unchanged.

    This also lets a cached hub LoRA load offline: there diffusers refuses a hub id without `weight_name`
    ("you must specify a `weight_name`"), which read like a LoRA that does not fit.
    """
    if not is_hub_id(source) or why_offline() is None:
        return source
    from huggingface_hub import snapshot_download

    try:
        with quiet_hub_warnings():
            return snapshot_download(source, local_files_only=True)
    except Exception as error:  # not cached (LocalEntryNotFoundError), or no such repo in the cache
        raise FileNotFoundError("not in the Hugging Face cache") from error


def causes(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then what it was raised from or while handling, and so on (loaders re-raise)."""
    seen = set()
    while error is not None and id(error) not in seen:
        yield error
        seen.add(id(error))
        error = error.__cause__ or error.__context__


def refused_pickle(error: BaseException) -> pickle.UnpicklingError | None:
    """torch.load's weights_only refusal anywhere in `error`'s chain of causes."""
    return next((e for e in causes(error) if isinstance(e, pickle.UnpicklingError)), None)


def load_error(what: str, source: str, error: Exception, filename: str | None = None) -> RenderError:
    """A refused pickle file says which file and why; anything else is a model that cannot be found."""
    refusal = refused_pickle(error)
    if refusal is None:
        return missing_model_error(what, source, error, filename)
    found = re.search(r"GLOBAL ([\w.]+)", str(refusal))
    reason = f"it imports {found[1]}, which is code, not weights" if found else "it holds more than tensors"
    where = refused_file(source, error) or f"a pickle (.bin) weights file of {source!r}"
    return RenderError(
        f"refused to load {where}: {reason}; semanticdraw loads no pickle code (torch.load with weights_only)\n"
        "what to do: use the model's .safetensors weights, or convert the file to safetensors where you trust it"
    )


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def refused_file(source: str, error: BaseException) -> str | None:
    """The pickle weights file the loader refused: named in its messages, else the first one under a
    local `source` that weights_only loading refuses (read memory-mapped: no tensor data is copied)."""
    quoted = re.compile(r"'([^']+(?:" + "|".join(map(re.escape, PICKLE_SUFFIXES)) + r"))'")
    for cause in causes(error):
        named = quoted.search(str(cause))
        if named:
            return named[1]
    folder = Path(source)
    candidates = [folder] if folder.is_file() else sorted(folder.glob("*/*")) + sorted(folder.glob("*"))
    for path in candidates:
        if path.suffix in PICKLE_SUFFIXES and path.is_file():
            import torch

            try:
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except pickle.UnpicklingError:
                return str(path)
            except Exception:  # another fault of that file: not the one refused
                continue
    return None


@contextlib.contextmanager
def quiet_hub_warnings():
    """Hide the one deprecation warning diffusers triggers on every hub look-up (`local_dir_use_symlinks`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The `local_dir_use_symlinks` argument is deprecated")
        yield


class _NoTorchvisionFallbackNote(logging.Filter):
    """Drops transformers' "`CLIPImageProcessor` requires torchvision (not installed); falling back to ...Pil"
    notes: importing a diffusers pipeline prints two, on every command that loads a model, even with --quiet,
    and the PIL processors they fall back to are the ones we want (CLIP scores use them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed)" not in str(record.msg)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Loading a model without the libraries' chatter: transformers at error level from its first import,
    the torchvision notes dropped (transformers logs each once per process, so they stay gone), hub warnings."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers is first imported
    import_notes = logging.getLogger("transformers.utils.import_utils")
    note_filter = _NoTorchvisionFallbackNote()
    import_notes.addFilter(note_filter)
    try:
        with quiet_hub_warnings():
            yield
    finally:
        import_notes.removeFilter(note_filter)
