"""Feature visualization on the CPU: spyglass's MACO and Fourier against horama's MACO.

What it measures
    On the default model (``spyglass.models.load()``, EfficientNet-Lite0), on the CPU, for
    the class logit of each of ``--classes`` Imagenette classes, with the same settings for
    every method (steps, image size, crops per step, crop sizes, learning rate 1.0, noise):

    1. **Speed.** Seconds per optimisation step: the wall time of one whole visualization
       divided by its steps, averaged over the classes. The methods alternate class by
       class, so a change in the machine's load hits all of them. Target: spyglass MACO /
       horama MACO <= 1.0.
    2. **Quality.** For each final image, 32 random crops drawn like the optimisation's
       (the same crop-size range, positions uniform inside the image, seeded, no noise)
       and resized to the model's input: the mean probability of the target class under
       the default model, under EfficientNet-Lite1 (transfer; crops resized to its 240 px
       input), the share of crops with the class in Lite1's top-5, and the probability of
       the whole image shrunk to 224 px (a MACO image is a mosaic: that figure is low).

    horama (the MACO authors' package, PyPI ``horama``) downloads its spectrum at run time;
    offline, it is given spyglass's shipped spectrum under its expected file name, in a
    temporary working folder. It is called as its users call it: ``horama.maco(objective,
    ...)`` with ``values_range=(0, 1)`` (the model wrapper normalises), the same crops per
    step, and ``box_size`` set so that its crop sides cover the same range as spyglass's
    (horama draws a side in ``[high, 2·high − low]`` of its ``box_size=(low, high)``, centred
    at ``0.5 + 0.15·N(0, 1)``). The model's parameters keep ``requires_grad=True``, as
    ``spyglass.models.load()`` returns them: horama computes their gradients too, which
    spyglass avoids.

Allocator
    The child runs under the tuned glibc allocator by default (see forward.py and
    DESIGN.md); ``--allocator default`` removes it. The setting is in the header and the
    JSON (``benchmarks/results/featureviz.json``).

Run ``python benchmarks/featureviz.py --help``; ``--quick`` is a smoke run (2 classes,
16 steps, 256 px). The full run (10 classes, 256 steps at 512 px, three methods) takes
about 1.5 hours on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import (
    RESULTS,
    SETTINGS,
    TUNED_ENV,
    load_average,
    log,
    machine_info,
    positive_int,
    require_spyglass,
    run_child,
    warn_if_busy,
)

if TYPE_CHECKING:
    from torch import Tensor

DEFAULT_OUTPUT = RESULTS / "featureviz.json"
# The ten Imagenette classes (ImageNet indices), in its folder order.
CLASSES = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)
METHODS = ("maco", "fourier", "horama")
DEFAULT_STEPS, QUICK_STEPS = 256, 16
DEFAULT_SIZE, QUICK_SIZE = 512, 256
DEFAULT_CLASSES, QUICK_CLASSES = 10, 2
NB_CROPS, LEARNING_RATE, NOISE = 6, 1.0, 0.05
EVAL_CROPS = 32
RATIO_TARGET = 1.0


def method_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part for part in text.replace(",", " ").split()))
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"methods must be among {', '.join(METHODS)}; got {text!r}")
    return names


# ----------------------------------------------------------------------------- child


def run_horama(model: Any, class_id: int, args: argparse.Namespace, crop: tuple[float, float]) -> Tensor:
    """horama's MACO on ``model``, with spyglass's spectrum placed where horama looks for its own."""
    import numpy as np
    from horama import maco as horama_maco
    from horama.maco_fv import MACO_SPECTRUM_FILENAME

    from spyglass.featureviz.spectrum import _stored_magnitude

    low, high = crop
    box_size = (max(0.0, 2 * low - high), low)  # horama's side: U(high_box, 2·high_box − low_box)
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="spyglass-horama-") as folder:
        np.save(Path(folder) / MACO_SPECTRUM_FILENAME, _stored_magnitude().numpy())
        os.chdir(folder)
        try:
            image, _transparency = horama_maco(
                lambda views: model(views)[:, class_id].mean(),
                total_steps=args.steps,
                learning_rate=LEARNING_RATE,
                image_size=args.image_size,
                model_input_size=model.input_size[0],
                noise=NOISE,
                values_range=(0.0, 1.0),
                crops_per_iteration=NB_CROPS,
                box_size=box_size,
                device="cpu",
            )
        finally:
            os.chdir(previous)
    result: Tensor = image.detach().clamp(0, 1)
    return result


def quality(
    image: Tensor, class_id: int, lite0: Any, lite1: Any, crop: tuple[float, float]
) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from spyglass.featureviz import random_crops

    generator = torch.Generator().manual_seed(1234)
    views = random_crops(image, EVAL_CROPS, crop_size=crop, output_size=lite0.input_size, generator=generator)
    with torch.no_grad():
        probability = lite0(views).softmax(dim=1)[:, class_id]
        resized = F.interpolate(views, size=lite1.input_size, mode="bilinear", antialias=True)
        logits = lite1(resized)
        transfer = logits.softmax(dim=1)[:, class_id]
        top5 = (logits.topk(5, dim=1).indices == class_id).any(dim=1).float()
        whole = F.interpolate(image[None], size=lite0.input_size, mode="bilinear", antialias=True)
        whole_probability = lite0(whole).softmax(dim=1)[0, class_id]
    return {
        "crop_probability": float(probability.mean()),
        "lite1_crop_probability": float(transfer.mean()),
        "lite1_top5_share": float(top5.mean()),
        "whole_image_probability": float(whole_probability),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("TQDM_DISABLE", "1")  # horama's bar cannot be turned off otherwise
    import torch

    from spyglass import featureviz, models
    from spyglass.featureviz.optimize import default_crop_size

    lite0 = models.load()
    lite1 = models.load("efficientnet_lite1")
    crop = default_crop_size(args.image_size, lite0.input_size)
    settings = {
        "steps": args.steps,
        "image_size": args.image_size,
        "nb_crops": NB_CROPS,
        "crop_size": crop,
        "lr": LEARNING_RATE,
        "noise": NOISE,
    }
    rows: list[dict[str, Any]] = []
    for class_id in CLASSES[: args.classes]:
        for method in args.methods:
            log(f"{method}: class {class_id} ({lite0.class_names[class_id]}), {args.steps} steps ...")
            start = time.perf_counter()
            if method == "horama":
                image = run_horama(lite0, class_id, args, crop)
            else:
                recipe = featureviz.maco if method == "maco" else featureviz.fourier
                image = recipe(lite0, featureviz.logit(class_id), progress=False, **settings).image
            seconds = time.perf_counter() - start
            row = {
                "method": method,
                "class": class_id,
                "seconds": seconds,
                "seconds_per_step": seconds / args.steps,
            }
            row.update(quality(image, class_id, lite0, lite1, crop))
            log("  " + ", ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)))
            rows.append(row)
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "allocator": {key: os.environ.get(key) for key in TUNED_ENV},
        "settings": settings,
        "rows": rows,
    }


# ---------------------------------------------------------------------------- parent


def summarize(rows: list[dict[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, float]]:
    keys = (
        "seconds_per_step",
        "crop_probability",
        "lite1_crop_probability",
        "lite1_top5_share",
        "whole_image_probability",
    )
    return {
        method: {key: statistics.fmean(r[key] for r in rows if r["method"] == method) for key in keys}
        for method in methods
    }


def print_report(report: dict[str, Any]) -> None:
    settings = report["timing"]["settings"]
    summary = report["summary"]
    print(
        f"\nFeature visualization, {report['model']}, CPU, {report['machine']['threads']} threads, "
        f"{report['allocator']} allocator; {report['classes']} classes; steps={settings['steps']}, "
        f"image_size={settings['image_size']}, nb_crops={settings['nb_crops']}, crop_size="
        f"({settings['crop_size'][0]:.3f}, {settings['crop_size'][1]:.3f}), lr={settings['lr']}, "
        f"noise={settings['noise']}\n"
    )
    print(
        "| method | s/step | p(class), Lite0 crops | p(class), Lite1 crops | Lite1 top-5 | p(class), whole |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for method, values in summary.items():
        print(
            f"| {method} | {values['seconds_per_step']:.3f} | {values['crop_probability']:.3f} | "
            f"{values['lite1_crop_probability']:.3f} | {values['lite1_top5_share']:.2f} | "
            f"{values['whole_image_probability']:.3f} |"
        )
    if "maco" in summary and "horama" in summary:
        ratio = summary["maco"]["seconds_per_step"] / summary["horama"]["seconds_per_step"]
        verdict = "meets" if ratio <= RATIO_TARGET else "misses"
        print(f"\nspyglass MACO / horama MACO, seconds per step: {ratio:.2f} ({verdict} the target <= 1.0)")
    print(f"\nwall time {report['wall_seconds']:.0f} s; results written to {report['output']}")


def orchestrate(args: argparse.Namespace) -> None:
    require_spyglass()
    load_before = warn_if_busy()
    started = time.perf_counter()
    arguments = [
        "--classes",
        str(args.classes),
        "--steps",
        str(args.steps),
        "--image-size",
        str(args.image_size),
        "--methods",
        ",".join(args.methods),
    ]
    timing = run_child(__file__, arguments, args.allocator)
    report = {
        "benchmark": "featureviz",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "model": "efficientnet_lite0 (spyglass.models.load())",
        "transfer_model": "efficientnet_lite1",
        "device": "cpu",
        "machine": machine_info(timing["torch"], timing["threads"], load_before, load_average()),
        "allocator": args.allocator,
        "env": TUNED_ENV if args.allocator == "tuned" else {},
        "classes": args.classes,
        "wall_seconds": time.perf_counter() - started,
        "timing": timing,
        "summary": summarize(timing["rows"], args.methods),
        "output": str(args.output),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time and score spyglass's MACO and Fourier feature visualization against horama's "
        "MACO, on the CPU with the default model."
    )
    parser.add_argument(
        "--classes",
        type=positive_int,
        default=None,
        help=f"how many of the 10 Imagenette classes (default {DEFAULT_CLASSES}, quick {QUICK_CLASSES})",
    )
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help=f"optimisation steps (default {DEFAULT_STEPS}, quick {QUICK_STEPS})",
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help=f"image side in pixels (default {DEFAULT_SIZE}, quick {QUICK_SIZE})",
    )
    parser.add_argument(
        "--methods",
        type=method_list,
        default=METHODS,
        help=f"comma-separated, among {','.join(METHODS)} (default all)",
    )
    parser.add_argument(
        "--allocator",
        choices=SETTINGS,
        default="tuned",
        help="glibc allocator setting of the child process (default tuned)",
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
        help="smoke run: 2 classes, 16 steps, 256 px (explicit options still win)",
    )
    parser.add_argument("--child-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.classes is None:
        args.classes = QUICK_CLASSES if args.quick else DEFAULT_CLASSES
    if args.steps is None:
        args.steps = QUICK_STEPS if args.quick else DEFAULT_STEPS
    if args.image_size is None:
        args.image_size = QUICK_SIZE if args.quick else DEFAULT_SIZE
    if args.classes > len(CLASSES):
        parser.error(f"--classes must be at most {len(CLASSES)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_output is not None:
        args.child_output.write_text(json.dumps(measure(args), indent=2))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
