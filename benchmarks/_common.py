"""What the benchmark scripts share: arguments, photos, allocator environments, child runs, machine.

Each benchmark re-runs itself in child processes whose environment fixes the glibc
allocator setting (it must be in place before Python starts), and reports the machine it
ran on. The scripts are run as files (``python benchmarks/forward.py``), so this module is
imported by its bare name from the scripts' own folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "imagenette-val"
RESULTS = REPO_ROOT / "benchmarks" / "results"

TUNED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
SETTINGS = ("default", "tuned")
BUSY_LOAD = 0.5  # 1-minute load average above which the numbers are not to be trusted


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def int_list(text: str, what: str = "value") -> tuple[int, ...]:
    """Comma- or space-separated positive integers, repeats dropped, order kept."""
    try:
        values = tuple(positive_int(part) for part in text.replace(",", " ").split())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a list of positive integers: {text!r}") from error
    if not values:
        raise argparse.ArgumentTypeError(f"give at least one {what}")
    return tuple(dict.fromkeys(values))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ photos


def load_images(
    folder: Path, count: int, preprocess: Callable[[Any], Any], *, per_class: int | None = None
) -> tuple[Any, str]:
    """``count`` preprocessed photos as one ``(count, 3, H, W)`` tensor, and their source.

    Photos are read from the ImageFolder tree ``folder`` in listing order (at most
    ``per_class`` of each class when given); if the folder is absent, the bundled
    ``spyglass.data.sample_photos()`` are used. Too few photos are repeated to fill ``count``.
    """
    import torch

    from spyglass import data

    if folder.is_dir():
        images = data.read_images(folder, preprocess, limit=count, per_class=per_class, progress=False).images
        source = f"{folder} ({len(images)} photos)"
    else:
        photos = data.sample_photos()
        images = torch.stack([preprocess(photo) for photo in photos.values()])
        source = f"spyglass.data.sample_photos() ({len(images)} photos; {folder} is absent)"
        log(f"data folder {folder} not found: using the {len(images)} bundled sample photos")
    if len(images) == 0:
        raise SystemExit(f"no readable photos in {folder}")
    if len(images) < count:  # repeat the photos to fill the batch
        repeats = -(-count // len(images))
        images = images.repeat(repeats, 1, 1, 1)[:count]
    return images.contiguous(), source


# ----------------------------------------------------------------------- child processes


def child_env(setting: str) -> dict[str, str]:
    """The environment of a child: the allocator variables removed, then set if tuned."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MALLOC_") and key != "GLIBC_TUNABLES"
    }
    if setting == "tuned":
        env.update(TUNED_ENV)
    return env


def run_child(script: str | Path, arguments: Sequence[str], setting: str) -> dict[str, Any]:
    """Run ``script arguments --child-output FILE`` under allocator ``setting``; return FILE's JSON."""
    with tempfile.TemporaryDirectory(prefix="spyglass-bench-") as tmp:
        output = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(script).resolve()), *arguments, "--child-output", str(output)]
        subprocess.run(command, env=child_env(setting), check=True)
        result: dict[str, Any] = json.loads(output.read_text())
    return result


def require_spyglass() -> None:
    """Fail in the parent, not in every child, when this interpreter cannot import spyglass."""
    if importlib.util.find_spec("spyglass") is None:
        raise SystemExit(f"cannot import spyglass with {sys.executable}; activate its environment")


# ------------------------------------------------------------------------------ machine


def load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def warn_if_busy() -> float | None:
    """Warn when the machine is busy; return the 1-minute load average."""
    load = load_average()
    if load is not None and load > BUSY_LOAD:
        log(
            f"warning: 1-minute load average is {load:.2f} on {os.cpu_count() or 1} CPU(s); "
            "other work on the machine will slow the measurements"
        )
    return load


def machine_info(
    torch_version: str, threads: int, load_before: float | None, load_after: float | None
) -> dict[str, Any]:
    """The machine a benchmark ran on, for its JSON report."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count() or 1,
        "python": platform.python_version(),
        "torch": torch_version,
        "threads": threads,
        "load_average_1min_before": load_before,
        "load_average_1min_after": load_after,
    }


def child_report(allocator: str, result: dict[str, Any], load_before: float | None) -> dict[str, Any]:
    """The JSON report of a benchmark measured in a child process: date, allocator, machine, result."""
    import torch

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "allocator": f"{allocator} ({' '.join(f'{k}={v}' for k, v in TUNED_ENV.items())})"
        if allocator == "tuned"
        else allocator,
        "machine": machine_info(torch.__version__, result["threads"], load_before, load_average()),
        "result": result,
    }
