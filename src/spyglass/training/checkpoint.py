"""Checkpoints written atomically: a crash while saving never leaves a broken file behind.

A checkpoint is written to a temporary file in the same folder, flushed to disk, and then
renamed over the old one with :func:`os.replace` (atomic on POSIX and Windows when both
paths are on one file system, which the same folder guarantees). A reader therefore sees
either the previous checkpoint or the new one, whole. Checkpoints are read back with
``torch.load(weights_only=True)``: they hold tensors, numbers, strings, lists and dicts
only, so loading one never runs code from the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_checkpoint", "save_checkpoint", "sync_folder"]


def _check_path(path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a file path (str or os.PathLike); got {type(path).__name__}")
    checked = Path(path)
    if checked.is_dir():
        raise ValueError(f"checkpoint must be a file path; {checked} is a folder")
    return checked


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``).

    The folder is created if needed. If anything fails while writing, ``path`` keeps its
    previous content and the temporary file is removed.

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> path = save_checkpoint({"step": 3, "weight": torch.ones(2)}, Path(tempfile.mkdtemp()) / "run.pt")
    >>> load_checkpoint(path)["step"]
    3
    """
    target = _check_path(path)
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping of names to values; got {type(state).__name__}")
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(dict(state), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    sync_folder(target.parent)
    return target


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (the checkpoints' and the atlas's files).

    The rename itself lives in the folder's entry table; syncing the folder makes it survive a
    power cut. Not every platform can open a folder (Windows cannot): then the rename is all we get.
    """
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = None
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors, numbers and containers only)."""
    source = _check_path(path)
    if not source.is_file():
        raise ValueError(f"checkpoint {source} does not exist")
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which file, not where torch failed
        raise ValueError(f"checkpoint {source} cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {source} does not hold a mapping; got {type(state).__name__}")
    return state
