"""Attribution metrics on real photos: the methods × metrics table, and each metric's cost floor.

What it measures
    On the default model (``spyglass.models.load()``, EfficientNet-Lite0), on the CPU, on
    ``--images`` photos of ``../shared/data/imagenette-val`` (default 200, spread over its
    classes), each explained for its label:

    1. **The table.** Deletion (zero baseline), Insertion (blurred baseline) and MuFidelity
       of every registered attribution method (``--methods`` to choose), with the options
       of ``benchmarks/attributions.py`` (``--quick``: its cheap ones). The Sobol paper
       (Fel et al. 2021) reports that on ResNet-50 the black-box estimators (Sobol, RISE)
       beat the gradient methods on Deletion; the report says whether that holds here.
    2. **Floor ratio.** Each metric's time over its floor: the forward passes it makes,
       counted by a hook on the model's first layer (``N · (steps + 1)`` for Deletion and
       Insertion, ``N · (nb_samples + 1)`` for MuFidelity), times the per-image time of a
       plain :func:`~spyglass.engines.batched_forward` at the same batch size, measured in
       the same process before and after. Target <= 1.15. The metrics stream their
       perturbed images through the perturbation engine, so the ratio is the overhead of
       building the masks and perturbed images.

Allocator
    The measuring child runs under the tuned glibc allocator by default
    (``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000``, DESIGN.md);
    ``--allocator default`` removes it. The setting is in the report header and the JSON
    (``benchmarks/results/evaluation.json``).

Run ``python benchmarks/evaluation.py --help`` for the options; ``--images 8 --quick`` is
a smoke run of a few minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATA,
    RESULTS,
    SETTINGS,
    child_report,
    load_images,
    log,
    positive_int,
    require_spyglass,
    run_child,
    warn_if_busy,
)
from attributions import FLOOR_TARGET, RowCounter, forward_floor, method_options

DEFAULT_OUTPUT = RESULTS / "evaluation.json"
DEFAULT_IMAGES = 200
DEFAULT_BATCH_SIZE = 16  # the lowest per-image forward cost on 2 cores (forward.py)
FLOOR_RUNS = 5
METRICS = ("deletion", "insertion", "mufidelity")
# Deletion and Insertion with 20 slices (the library's default), MuFidelity at its defaults.
METRIC_OPTIONS: dict[str, dict[str, Any]] = {
    "deletion": {"steps": 20, "baseline": "zero"},
    "insertion": {"steps": 20, "baseline": "blur"},
    "mufidelity": {"nb_samples": 200, "grid_size": 9, "subset_percent": 0.2},
}
QUICK_METRIC_OPTIONS: dict[str, dict[str, Any]] = {
    "deletion": {"steps": 10, "baseline": "zero"},
    "insertion": {"steps": 10, "baseline": "blur"},
    "mufidelity": {"nb_samples": 32, "grid_size": 9, "subset_percent": 0.2},
}
GRADIENT_METHODS = ("saliency", "gradient_input", "integrated_gradients", "smoothgrad", "gradcam")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """The table and the floor ratios, in this process (under the allocator it started with)."""
    import torch

    from spyglass import attributions, metrics, models
    from spyglass.runtime import allocator_setting

    started = time.perf_counter()
    model = models.load()
    per_class = -(-args.images // 10)  # spread the photos over imagenette's 10 classes
    if args.data.is_dir():  # one read gives the photos and their labels
        from spyglass import data

        batch = data.read_images(
            args.data, model.preprocess, limit=args.images, per_class=per_class, progress=False
        )
        if len(batch) == 0:
            raise SystemExit(f"no readable photos in {args.data}")
        images, labels, source = batch.images, batch.labels, f"{args.data} ({len(batch)} photos)"
    else:
        images, source = load_images(args.data, args.images, model.preprocess, per_class=per_class)
        labels = None
    if labels is None or bool((labels < 0).any()) or len(labels) != len(images):
        labels = model.predict(images, top_k=1, batch_size=args.batch_size, progress=False).indices[:, 0]
    registered = attributions.list_methods()
    chosen = [m for m in (args.methods or registered) if m in registered]
    options = method_options(args.quick)
    metric_options = QUICK_METRIC_OPTIONS if args.quick else METRIC_OPTIONS
    counter = RowCounter(model, *images.shape[-2:])
    floor_before = forward_floor(model, images, args.batch_size, FLOOR_RUNS)
    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        method = attributions.create(
            name, model, batch_size=args.batch_size, progress=False, **options.get(name, {})
        )
        start = time.perf_counter()
        maps = method(images, labels)
        entry: dict[str, Any] = {
            "options": options.get(name, {}),
            "maps_seconds": time.perf_counter() - start,
        }
        for metric_name in METRICS:
            metric = metrics.create(
                metric_name,
                model,
                images,
                labels,
                batch_size=args.batch_size,
                progress=False,
                **metric_options[metric_name],
            )
            counter.reset()
            start = time.perf_counter()
            value = metric(maps)
            entry[metric_name] = {
                "value": value,
                "seconds": time.perf_counter() - start,
                "forwards": counter.rows,
            }
        results[name] = entry
        log(
            f"  {name:<21} "
            + ", ".join(f"{m} {entry[m]['value']:.4f} ({entry[m]['seconds']:.1f} s)" for m in METRICS)
        )
    floor_after = forward_floor(model, images, args.batch_size, FLOOR_RUNS)
    per_image = statistics.median(floor_before + floor_after)
    for entry in results.values():
        for metric_name in METRICS:
            cell = entry[metric_name]
            cell["floor_seconds"] = cell["forwards"] * per_image
            cell["floor_ratio"] = cell["seconds"] / cell["floor_seconds"]
    counter.close()
    return {
        "allocator": allocator_setting(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "data": source,
        "images": len(images),
        "batch_size": args.batch_size,
        "quick": args.quick,
        "metric_options": metric_options,
        "floor_ms_per_image": 1000 * per_image,
        "methods": results,
        "seconds": time.perf_counter() - started,
    }


def direction(metric: str) -> str:
    return "↓" if metric == "deletion" else "↑"


def report_lines(result: dict[str, Any]) -> list[str]:
    methods = result["methods"]
    lines = [
        "| method | " + " | ".join(f"{m} {direction(m)}" for m in METRICS) + " | maps (s) |",
        "|---|" + "---:|" * (len(METRICS) + 1),
    ]
    for name, entry in sorted(methods.items(), key=lambda item: item[1]["deletion"]["value"]):
        values = " | ".join(f"{entry[m]['value']:.4f}" for m in METRICS)
        lines.append(f"| {name} | {values} | {entry['maps_seconds']:.1f} |")
    lines += [
        "",
        f"| metric | forwards | floor (s) | time (s) | ratio | ≤ {FLOOR_TARGET:.2f} |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for metric_name in METRICS:
        cells = [entry[metric_name] for entry in methods.values()]
        if not cells:
            continue
        forwards = sum(c["forwards"] for c in cells)
        floor = sum(c["floor_seconds"] for c in cells)
        seconds = sum(c["seconds"] for c in cells)
        ok = "yes" if seconds / floor <= FLOOR_TARGET else "**no**"
        lines.append(
            f"| {metric_name} | {forwards} | {floor:.1f} | {seconds:.1f} | {seconds / floor:.2f} | {ok} |"
        )
    black_box = [methods[m]["deletion"]["value"] for m in ("sobol", "rise") if m in methods]
    gradients = [methods[m]["deletion"]["value"] for m in GRADIENT_METHODS if m in methods]
    if black_box and gradients:
        holds = max(black_box) < min(gradients)
        lines += [
            "",
            f"Deletion, black-box (Sobol, RISE) best {min(black_box):.4f} / worst {max(black_box):.4f}; "
            f"gradient methods best {min(gradients):.4f}. Black-box beat every gradient method: "
            f"{'yes' if holds else 'no'}.",
        ]
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=positive_int, default=DEFAULT_IMAGES, help="Photos (default 200).")
    parser.add_argument(
        "--methods",
        type=lambda text: [m for m in text.replace(",", " ").split() if m],
        default=None,
        help="Comma-separated methods (default: every registered method).",
    )
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--quick", action="store_true", help="Cheap method and metric settings (a smoke run)."
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="An ImageFolder tree of photos.")
    parser.add_argument("--allocator", choices=SETTINGS, default="tuned", help="glibc allocator setting.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Where to write the JSON report.")
    parser.add_argument("--child-output", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_output is not None:
        args.child_output.write_text(json.dumps(measure(args)))
        return
    require_spyglass()
    load_before = warn_if_busy()
    arguments = ["--images", str(args.images), "--batch-size", str(args.batch_size), "--data", str(args.data)]
    if args.methods:
        arguments += ["--methods", ",".join(args.methods)]
    if args.quick:
        arguments.append("--quick")
    result = run_child(__file__, arguments, args.allocator)
    report = child_report(args.allocator, result, load_before)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    machine = report["machine"]
    print(
        f"spyglass evaluation: EfficientNet-Lite0, CPU, {machine['threads']} torch threads, "
        f"{machine['cpu_count']} CPUs; {result['images']} photos, batch {result['batch_size']}"
        f"{', quick settings' if result['quick'] else ''}"
    )
    print(f"data: {result['data']}")
    print(f"allocator: {report['allocator']}; forward floor {result['floor_ms_per_image']:.1f} ms/image")
    print(f"metric options: {result['metric_options']}")
    print("\n".join(report_lines(result)))
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
