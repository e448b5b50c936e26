"""EVA on the default model: cost per mode, bound width against depth, stability of the hybrid mode, fidelity.

What it measures
    On the default model (``spyglass.models.load()``, EfficientNet-Lite0, 224 px), on the
    CPU, on photos of ``../shared/data/imagenette-val`` (each explained for its label):

    1. **Cost.** Seconds per image of each mode of EVA (``ibp``, ``crown``, ``hybrid``,
       ``empirical``) at ``--grid`` (default 12), with the number of bound passes (boxes
       bounded by :mod:`spyglass.bounds`, counted by wrapping its functions) and of forward
       passes (images entering the model's first layer, counted by a hook), and the time as
       a ratio to that many forward passes of the plain model (``batched_forward``, timed in
       the same process): IBP costs about two forwards per box. A mode that fails (CROWN
       that does not fit in memory) is reported with its error. The paper's hybrid mode:
       64.5 s per image on a P100 (VGG-16); the target here is under that on a 2-core CPU.
    2. **Bound width against depth.** The mean width ``u − l`` of IBP's (and, where it fits,
       CROWN's) bounds at every node of the traced graph (:func:`spyglass.bounds.layer_bounds`)
       for ε ∈ {1, 2, 5}/255 on one photo; and, per ε, whether the verified modes give a
       non-trivial map: ``AO(x, B)``, the spread of the scores, the share of cells scored
       above 0 and the rank correlation with the hybrid mode's map.
    3. **Stability of the hybrid mode.** For ``nb_samples`` in ``--samples``: its forward
       passes per image and the rank correlation of the maps of two seeds (how much of
       the map is the sampling, not the model); the default ``nb_samples`` is chosen from it.
    4. **Fidelity.** Deletion, Insertion and MuFidelity (``spyglass.metrics.evaluate``, the
       metric settings of ``benchmarks/evaluation.py``) of EVA (hybrid, its defaults) next to
       Sobol, RISE, Saliency and Grad-CAM on ``--photos`` photos (default 20), with the
       paper's ImageNet row for reference (VGG-16; Del .070, Ins .289, µFid .048).

Timings move by 3× from day to day and by 10× under load: run it on a quiet machine and
compare the ratios. ``--quick`` is a smoke run (grid 4, one photo, ε = 5/255 only, few
samples, quick method settings); it checks that everything runs, not the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATA,
    RESULTS,
    SETTINGS,
    child_report,
    log,
    positive_int,
    require_spyglass,
    run_child,
    warn_if_busy,
)
from attributions import RowCounter, forward_floor
from evaluation import METRIC_OPTIONS, QUICK_METRIC_OPTIONS

DEFAULT_OUTPUT = RESULTS / "eva.json"
MODES = ("ibp", "crown", "hybrid", "empirical")
EPSILONS = (1, 2, 5)  # in 1/255
COMPARED = ("sobol", "rise", "saliency", "gradcam")
METRICS = ("deletion", "insertion", "mufidelity")
SECTIONS = ("cost", "widths", "stability", "fidelity")
PAPER_ROW = {"deletion": 0.070, "insertion": 0.289, "mufidelity": 0.048, "seconds": 64.5}


class BoundCounter:
    """Counts the boxes handed to :mod:`spyglass.bounds` (one bound pass per box), by wrapping it."""

    NAMES = ("interval_bounds", "linear_bounds")

    def __init__(self) -> None:
        from spyglass import bounds

        self.module = bounds
        self.originals = {name: getattr(bounds, name) for name in self.NAMES}
        self.rows = 0
        for name, function in self.originals.items():
            setattr(bounds, name, self._counted(function))

    def _counted(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(model: Any, lower: Any, *args: Any, **kwargs: Any) -> Any:
            self.rows += int(lower.shape[0])
            return function(model, lower, *args, **kwargs)

        return counted

    def reset(self) -> None:
        self.rows = 0

    def close(self) -> None:
        for name, function in self.originals.items():
            setattr(self.module, name, function)


def sections(text: str) -> tuple[str, ...]:
    """``--sections``: a comma-separated subset of :data:`SECTIONS`."""
    chosen = tuple(t for t in text.replace(",", " ").split())
    unknown = [t for t in chosen if t not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {', '.join(SECTIONS)}; got {text!r}"
        )
    return chosen


def spearman(a: Any, b: Any) -> float:
    """The rank correlation of two maps' cells (ties broken by position)."""
    import torch

    ranks = [values.flatten().argsort().argsort().double() for values in (a, b)]
    x, y = (r - r.mean() for r in ranks)
    denominator = float(torch.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / denominator if denominator > 0 else float("nan")


def cells(maps: Any, grid: int) -> Any:
    """The ``(N, grid²)`` cell values of EVA's maps (each cell is constant)."""
    from spyglass.engines import cell_boxes, cell_sums

    boxes = cell_boxes(maps.shape[1], maps.shape[2], grid)
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).to(maps.dtype)
    return cell_sums(maps, grid) / areas


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from spyglass import attributions, bounds, data, metrics, models
    from spyglass.runtime import allocator_setting

    started = time.perf_counter()
    model = models.load()
    count = max(args.images, args.photos)
    if args.data.is_dir():
        batch = data.read_images(
            args.data, model.preprocess, limit=count, per_class=-(-count // 10), progress=False
        )
        photos, labels, source = batch.images, batch.labels, f"{args.data} ({len(batch)} photos)"
    else:
        photos_by_name = data.sample_photos()
        photos = torch.stack([model.preprocess(p) for p in photos_by_name.values()])[:count]
        labels, source = None, f"spyglass.data.sample_photos() ({len(photos)} photos; {args.data} is absent)"
    if labels is None or bool((labels < 0).any()):
        labels = model.predict(photos, top_k=1, batch_size=args.batch_size, progress=False).indices[:, 0]
    grid = 4 if args.quick else args.grid
    samples = (2, 4) if args.quick else args.samples
    default_samples = attributions.EVA.__init__.__kwdefaults__["nb_samples"]
    hybrid_samples = 2 if args.quick else default_samples
    counter = RowCounter(model, *photos.shape[-2:])
    bound_counter = BoundCounter()
    floor = statistics.median(forward_floor(model, photos, args.batch_size, 3))
    log(f"forward floor {1000 * floor:.1f} ms/image")

    # 1. cost per mode
    images, targets = photos[: args.images], labels[: args.images]
    cost: dict[str, Any] = {}
    mode_maps: dict[str, Any] = {}
    for mode in MODES if "cost" in args.sections else ():
        options: dict[str, Any] = {"grid_size": grid, "bounds": mode}
        if mode == "hybrid":
            options["nb_samples"] = hybrid_samples
        if mode == "empirical" and args.quick:
            options["pgd_steps"] = 2
        counter.reset(), bound_counter.reset()
        start = time.perf_counter()
        try:
            method = attributions.create("eva", model, batch_size=args.batch_size, progress=False, **options)
            mode_maps[mode] = method(images, targets)
        except (ValueError, MemoryError, RuntimeError) as error:
            cost[mode] = {"options": options, "error": f"{type(error).__name__}: {error}"}
            log(f"  {mode}: failed: {error}")
            continue
        seconds = (time.perf_counter() - start) / len(images)
        passes = (bound_counter.rows + counter.rows) / len(images)
        cost[mode] = {
            "options": options,
            "seconds_per_image": seconds,
            "bound_passes": bound_counter.rows / len(images),
            "forward_passes": counter.rows / len(images),
            "ratio_to_forwards": seconds / (passes * floor) if passes else None,
            "overlap_B": [float(v) for v in method.overlap_],
            "guaranteed": method.guaranteed,
        }
        log(f"  {mode}: {seconds:.1f} s/image")

    # 2. bound width against depth, and when the verified modes are non-trivial
    photo = photos[:1]
    widths: dict[str, Any] = {}
    trivial: dict[str, Any] = {}
    for step in () if "widths" not in args.sections else EPSILONS[-1:] if args.quick else EPSILONS:
        epsilon = step / 255
        lower, upper = (photo - epsilon), (photo + epsilon)
        for method_name in ("ibp", "crown"):
            try:
                layers = bounds.layer_bounds(model, lower, upper, method=method_name)
            except (ValueError, MemoryError, RuntimeError) as error:
                widths[f"{method_name} {step}/255"] = {"error": f"{type(error).__name__}: {error}"}
                continue
            widths[f"{method_name} {step}/255"] = {
                name: float((high - low).mean()) for name, (low, high) in layers.items()
            }
        reference = mode_maps.get("hybrid")
        for mode in ("ibp", "crown"):
            try:
                method = attributions.create(
                    "eva",
                    model,
                    epsilon=epsilon,
                    grid_size=grid,
                    bounds=mode,
                    batch_size=args.batch_size,
                    progress=False,
                )
                maps = method(photo, labels[:1])
            except (ValueError, MemoryError, RuntimeError) as error:
                trivial[f"{mode} {step}/255"] = {"error": f"{type(error).__name__}: {error}"}
                continue
            values = cells(maps, grid)[0]
            trivial[f"{mode} {step}/255"] = {
                "overlap_B": float(method.overlap_[0]),
                "score_min": float(values.min()),
                "score_max": float(values.max()),
                "share_positive": float((values > 0).double().mean()),
                "rank_correlation_with_hybrid": spearman(values, cells(reference[:1], grid)[0])
                if reference is not None
                else None,
            }

    # 3. stability of the hybrid mode against nb_samples
    stability: dict[str, Any] = {}
    for nb_samples in samples if "stability" in args.sections else ():
        runs = []
        for seed in (0, 1):
            method = attributions.create(
                "eva",
                model,
                grid_size=grid,
                nb_samples=nb_samples,
                seed=seed,
                batch_size=args.batch_size,
                progress=False,
            )
            counter.reset()
            start = time.perf_counter()
            runs.append(cells(method(photo, labels[:1]), grid)[0])
            seconds = time.perf_counter() - start
        stability[str(nb_samples)] = {
            "forward_passes": counter.rows,
            "seconds": seconds,
            "rank_correlation_between_seeds": spearman(runs[0], runs[1]),
        }
        log(f"  nb_samples {nb_samples}: r = {spearman(runs[0], runs[1]):.3f}")

    # 4. fidelity against the other methods
    chosen = ["eva", *COMPARED]
    level = "quick" if args.quick else "default"
    method_options = {name: attributions.method_settings(name, level) for name in chosen}
    if args.quick:
        method_options["eva"] = {"grid_size": 4, "nb_samples": 2}
    fidelity: dict[str, Any] = {"options": method_options, "scores": {}, "seconds": {}}
    if "fidelity" in args.sections:
        evaluation = metrics.evaluate(
            model,
            photos[: args.photos],
            labels[: args.photos],
            methods=chosen,
            method_options=method_options,
            metrics=METRICS,
            metric_options=QUICK_METRIC_OPTIONS if args.quick else METRIC_OPTIONS,
            batch_size=args.batch_size,
            progress=False,
        )
        fidelity.update(scores=evaluation.scores, seconds=evaluation.seconds)
    counter.close(), bound_counter.close()
    return {
        "allocator": allocator_setting(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "data": source,
        "images": len(images),
        "photos": min(args.photos, len(photos)),
        "grid": grid,
        "quick": args.quick,
        "floor_ms_per_image": 1000 * floor,
        "cost": cost,
        "widths": widths,
        "verified_maps": trivial,
        "stability": stability,
        "sections": list(args.sections),
        "fidelity": fidelity,
        "seconds": time.perf_counter() - started,
    }


def report_lines(result: dict[str, Any]) -> list[str]:
    measured = result.get("sections", SECTIONS)
    lines: list[str] = []
    if "cost" in measured:
        lines += cost_lines(result)
    if "widths" in measured:
        lines += width_lines(result)
    if "stability" in measured:
        lines += stability_lines(result)
    if "fidelity" in measured:
        lines += fidelity_lines(result)
    return lines


def cost_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"## cost per image, grid {result['grid']} ({result['images']} photo(s); forward floor "
        f"{result['floor_ms_per_image']:.1f} ms/image)",
        "",
        "| mode | guaranteed | s/image | bound passes | forward passes | ratio to forwards |",
        "|---|:---:|---:|---:|---:|---:|",
    ]
    for mode, entry in result["cost"].items():
        if "error" in entry:
            lines.append(f"| {mode} | | failed: {entry['error'][:80]} | | | |")
            continue
        ratio = "" if entry["ratio_to_forwards"] is None else f"{entry['ratio_to_forwards']:.2f}"
        lines.append(
            f"| {mode} | {'yes' if entry['guaranteed'] else 'no'} | {entry['seconds_per_image']:.1f} | "
            f"{entry['bound_passes']:.0f} | {entry['forward_passes']:.0f} | {ratio} |"
        )
    lines.append(f"| paper, hybrid (VGG-16, P100) | no | {PAPER_ROW['seconds']} | | | |")
    return lines


def width_lines(result: dict[str, Any]) -> list[str]:
    lines = ["", "## mean bound width against depth (one photo)", ""]
    columns = [key for key, value in result["widths"].items() if "error" not in value]
    if columns:
        nodes = list(result["widths"][columns[0]])
        shown = nodes[:: max(1, len(nodes) // 12)] + (
            [nodes[-1]] if nodes[-1] not in nodes[:: max(1, len(nodes) // 12)] else []
        )
        lines += ["| node | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for node in shown:
            lines.append(
                f"| {node} | "
                + " | ".join(f"{result['widths'][c].get(node, float('nan')):.3g}" for c in columns)
                + " |"
            )
    for key, value in result["widths"].items():
        if "error" in value:
            lines.append(f"- {key}: {value['error'][:120]}")
    lines += [
        "",
        "## verified maps against ε (one photo)",
        "",
        "| mode, ε | AO(x, B) | score min | score max | cells > 0 | rank r with hybrid |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, value in result["verified_maps"].items():
        if "error" in value:
            lines.append(f"| {key} | failed: {value['error'][:80]} | | | | |")
            continue
        r = value["rank_correlation_with_hybrid"]
        lines.append(
            f"| {key} | {value['overlap_B']:.3g} | {value['score_min']:.3g} | {value['score_max']:.3g} | "
            f"{value['share_positive']:.0%} | {'' if r is None else f'{r:.2f}'} |"
        )
    return lines


def stability_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## hybrid mode: nb_samples against stability (one photo)",
        "",
        "| nb_samples | forward passes | s | rank r between seeds |",
        "|---:|---:|---:|---:|",
    ]
    for nb_samples, value in result["stability"].items():
        lines.append(
            f"| {nb_samples} | {value['forward_passes']} | {value['seconds']:.1f} | "
            f"{value['rank_correlation_between_seeds']:.3f} |"
        )
    return lines


def fidelity_lines(result: dict[str, Any]) -> list[str]:
    fidelity = result["fidelity"]["scores"]
    lines = [
        "",
        f"## fidelity ({result['photos']} photos)",
        "",
        "| method | deletion ↓ | insertion ↑ | mufidelity ↑ |",
        "|---|---:|---:|---:|",
    ]
    for name, scores in fidelity.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[m]:.4f}" for m in METRICS) + " |")
    lines.append(
        f"| paper's EVA, ImageNet (VGG-16) | {PAPER_ROW['deletion']:.3f} | {PAPER_ROW['insertion']:.3f} | "
        f"{PAPER_ROW['mufidelity']:.3f} |"
    )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--images", type=positive_int, default=2, help="Photos timed per mode (default 2).")
    parser.add_argument(
        "--photos", type=positive_int, default=20, help="Photos of the fidelity table (default 20)."
    )
    parser.add_argument("--grid", type=positive_int, default=12, help="Grid of regions (default 12).")
    parser.add_argument(
        "--samples",
        type=lambda text: tuple(int(t) for t in text.replace(",", " ").split()),
        default=(4, 8, 16, 32),
        help="nb_samples of the hybrid mode's stability table (default 4,8,16,32).",
    )
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument(
        "--sections",
        type=sections,
        default=SECTIONS,
        help=f"Which tables to measure, comma-separated (default all: {','.join(SECTIONS)}).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="A smoke run: grid 4, few samples, quick settings."
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="An ImageFolder tree of photos.")
    parser.add_argument("--allocator", choices=SETTINGS, default="tuned", help="glibc allocator setting.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Where to write the JSON report.")
    parser.add_argument("--child-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.photos = 1, min(args.photos, 2)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_output is not None:
        args.child_output.write_text(json.dumps(measure(args)))
        return
    require_spyglass()
    load_before = warn_if_busy()
    arguments = [
        "--images", str(args.images), "--photos", str(args.photos), "--grid", str(args.grid),
        "--samples", ",".join(map(str, args.samples)), "--batch-size", str(args.batch_size),
        "--data", str(args.data), "--sections", ",".join(args.sections),
    ]  # fmt: skip
    if args.quick:
        arguments.append("--quick")
    result = run_child(__file__, arguments, args.allocator)
    report = child_report(args.allocator, result, load_before)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    machine = report["machine"]
    print(
        f"spyglass EVA: EfficientNet-Lite0, CPU, {machine['threads']} torch threads, "
        f"{machine['cpu_count']} CPUs{', quick settings (a smoke run)' if result['quick'] else ''}; "
        f"allocator {report['allocator']}"
    )
    print(f"data: {result['data']}")
    print("\n".join(report_lines(result)))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
