"""The forward floor: images per second of EfficientNet-Lite0 on the CPU.

What it measures
    For the default model (``spyglass.models.load()``) on real photos, at several batch
    sizes: the throughput of (a) the plain forward pass (``engines.batched_forward``) and
    (b) the input gradient of the target logit (``engines.batched_gradients``), in
    images per second and milliseconds per image. Each batch size gets a warm-up call,
    then ``--repeats`` timed runs over the same fixed set of images; the median run is
    reported. Torch keeps its default thread count, which the report states.

Why
    Every later cost figure in spyglass (an attribution method, a metric, a concept
    extraction) is expressed as a ratio to this floor: "N forward passes' worth" is only
    meaningful once a forward pass has a measured price on this machine.

Allocator
    On a small CPU machine glibc's default allocator hands large blocks back to the
    system after every batch and page-faults them in again on the next, which costs more
    than the arithmetic (DESIGN.md: the tuned setting is 2.2-2.5x faster). The setting
    must be in place before Python starts, so this script re-runs itself in two child
    processes, one with the default environment and one with
    ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000``, and reports both side by
    side. Results go to ``benchmarks/results/forward.json``.

Run ``python benchmarks/forward.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATA,
    RESULTS,
    SETTINGS,
    TUNED_ENV,
    int_list,
    load_average,
    load_images,
    log,
    machine_info,
    positive_int,
    require_spyglass,
    run_child,
    warn_if_busy,
)

DEFAULT_OUTPUT = RESULTS / "forward.json"
DEFAULT_BATCH_SIZES = (1, 4, 16, 32, 64)
DEFAULT_IMAGES = 64
DEFAULT_REPEATS = 3
QUICK_BATCH_SIZES = (1, 4)
QUICK_IMAGES = 8
QUICK_REPEATS = 1

MODES = ("forward", "gradient")


# --------------------------------------------------------------------------- arguments


def batch_sizes(text: str) -> tuple[int, ...]:
    return int_list(text, "batch size")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Measure images/s of the forward pass and of the input gradient of the default "
            "spyglass model on the CPU, under the glibc default allocator and the tuned one."
        ),
    )
    parser.add_argument(
        "--batch-sizes",
        type=batch_sizes,
        default=None,
        help=f"comma-separated batch sizes (default {','.join(map(str, DEFAULT_BATCH_SIZES))})",
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=None,
        help=f"images per timed run, rounded up to whole batches (default {DEFAULT_IMAGES})",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help=f"timed runs per batch size; the median is reported (default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=(
            "folder of photos (ImageFolder layout); the bundled sample photos if absent "
            f"(default {DEFAULT_DATA})"
        ),
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the JSON results (default {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"smoke run: batch sizes {','.join(map(str, QUICK_BATCH_SIZES))}, "
            f"{QUICK_IMAGES} images, {QUICK_REPEATS} repeat (explicit options still win)"
        ),
    )
    # Internal: run one measurement in this process and write its JSON here.
    parser.add_argument("--child-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_sizes is None:
        args.batch_sizes = QUICK_BATCH_SIZES if args.quick else DEFAULT_BATCH_SIZES
    if args.images is None:
        args.images = QUICK_IMAGES if args.quick else DEFAULT_IMAGES
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    return args


# ------------------------------------------------------------------------------- child


def time_runs(run: Callable[[], object], n_images: int, repeats: int) -> list[float]:
    """Images per second of each of ``repeats`` calls of ``run`` (which does ``n_images``)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(n_images / (time.perf_counter() - start))
    return rates


def summarize(rates: list[float]) -> dict[str, Any]:
    median = statistics.median(rates)
    return {
        "images_per_s": median,
        "ms_per_image": 1000.0 / median,
        "runs_images_per_s": rates,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Measure in this process, under whatever allocator setting it started with."""
    import torch

    from spyglass import engines, models
    from spyglass.runtime import allocator_setting

    started = time.perf_counter()
    model = models.load()
    largest = max(-(-args.images // size) * size for size in args.batch_sizes)
    pool, source = load_images(args.data, largest, model.preprocess)
    # Targets for the gradient: the model's own top class (the cost does not depend on it).
    targets = engines.batched_forward(model, pool, batch_size=32, progress=False).argmax(dim=1)
    setting = allocator_setting()
    threads = torch.get_num_threads()

    results: dict[str, Any] = {}
    for size in args.batch_sizes:
        n = -(-args.images // size) * size  # whole batches only
        images, labels = pool[:n], targets[:n]

        def forward(images: Any = images, size: int = size) -> object:
            return engines.batched_forward(model, images, batch_size=size, progress=False)

        def gradient(images: Any = images, labels: Any = labels, size: int = size) -> object:
            return engines.batched_gradients(model, images, labels, batch_size=size, progress=False)

        # Warm-up: one batch of each, so one-time costs (kernel selection, first
        # allocations at this shape) stay out of the timed runs.
        forward(images[:size])
        gradient(images[:size], labels[:size])
        entry = {
            "images_per_run": n,
            "forward": summarize(time_runs(forward, n, args.repeats)),
            "gradient": summarize(time_runs(gradient, n, args.repeats)),
        }
        results[str(size)] = entry
        log(
            f"  batch {size:>3}: forward {entry['forward']['images_per_s']:7.2f} images/s, "
            f"gradient {entry['gradient']['images_per_s']:7.2f} images/s"
        )
    return {
        "allocator": setting,
        "threads": threads,
        "torch": torch.__version__,
        "data": source,
        "seconds": time.perf_counter() - started,
        "batch_sizes": results,
    }


# ------------------------------------------------------------------------------ parent


def run_setting(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    arguments = [
        "--batch-sizes",
        ",".join(map(str, args.batch_sizes)),
        "--images",
        str(args.images),
        "--repeats",
        str(args.repeats),
        "--data",
        str(args.data),
    ]
    return run_child(__file__, arguments, setting)


def format_table(runs: dict[str, dict[str, Any]], batch_sizes: Sequence[int]) -> str:
    header = (
        f"{'batch':>5} | {'forward default':>15} {'forward tuned':>13} {'tuned/def':>9} | "
        f"{'gradient default':>16} {'gradient tuned':>14} {'tuned/def':>9}"
    )
    lines = ["images/s (median of the timed runs; ms/image in parentheses)", header]
    lines.append("-" * len(header))
    for size in batch_sizes:
        cells = []
        for mode, widths in zip(MODES, ((15, 13), (16, 14)), strict=True):
            default = runs["default"]["batch_sizes"][str(size)][mode]
            tuned = runs["tuned"]["batch_sizes"][str(size)][mode]
            ratio = tuned["images_per_s"] / default["images_per_s"]
            cells.append(f"{fmt(default):>{widths[0]}} {fmt(tuned):>{widths[1]}} {ratio:>8.2f}x")
        lines.append(f"{size:>5} | {cells[0]} | {cells[1]}")
    return "\n".join(lines)


def fmt(stats: dict[str, Any]) -> str:
    return f"{stats['images_per_s']:.1f} ({stats['ms_per_image']:.0f})"


def orchestrate(args: argparse.Namespace) -> None:
    require_spyglass()
    load_before = warn_if_busy()
    started = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    for setting in SETTINGS:
        log(f"[{setting} allocator] measuring in a child process ...")
        env = TUNED_ENV if setting == "tuned" else {}
        runs[setting] = {"env": env, **run_setting(setting, args)}
        log(f"[{setting} allocator] {runs[setting]['allocator']}")
    wall = time.perf_counter() - started
    load_after = load_average()
    threads = runs["default"]["threads"]
    machine = machine_info(runs["default"]["torch"], threads, load_before, load_after)
    report = {
        "benchmark": "forward",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "model": "efficientnet_lite0 (spyglass.models.load())",
        "device": "cpu",
        "machine": machine,
        "data": runs["default"]["data"],
        "batch_sizes": list(args.batch_sizes),
        "images_per_run": args.images,
        "repeats": args.repeats,
        "wall_seconds": wall,
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(
        f"spyglass forward floor: EfficientNet-Lite0, CPU, {threads} torch threads, "
        f"{machine['cpu_count']} CPUs, torch {machine['torch']}"
    )
    print(f"data: {report['data']}")
    if load_before is not None and load_after is not None:
        print(f"1-minute load average: {load_before:.2f} before, {load_after:.2f} after")
    print(
        f"{args.images} images per timed run (rounded up to whole batches), "
        f"median of {args.repeats} run(s) after one warm-up batch"
    )
    for setting in SETTINGS:
        print(f"{setting}: {runs[setting]['allocator']}")
    print()
    print(format_table(runs, args.batch_sizes))
    print()
    print(f"wall time {wall:.0f} s; results written to {args.output}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_output is not None:
        result = measure(args)
        args.child_output.write_text(json.dumps(result, indent=2))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
