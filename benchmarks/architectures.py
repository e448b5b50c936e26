"""What each architecture costs to explain (ResNet, ViT, ConvNeXt, EfficientNet-Lite0), per its own forward.

What it measures
    For each architecture, on the CPU, at 224 px, on photos of ``../shared/data/imagenette-val``
    (the bundled sample photos when it is absent), each explained for the model's own top-1 class:

    - the **forward floor**: seconds per image of a batched forward pass (``batched_forward``,
      batch ``--batch-size``, after a warm-up; the median of ``--runs``);
    - seconds per image of **saliency**, **Grad-CAM** (at the model's default layer,
      :func:`spyglass.models.default_layer`; the layer is reported), **RISE** with 256 masks,
      and a **CRAFT fit** on 32 photos (10 concepts, 64 px crops, the default layer and the
      learner CRAFT picks by the sign of the activations; the fit's seconds divided by 32);
    - each of those as a ratio to that model's forward floor, so that a ViT's cost is read next
      to a ResNet's without the models' own speeds in the way.

    The architectures: torchvision ``resnet18``, timm ``vit_tiny_patch16_224``, timm
    ``convnext_atto`` (all random weights: nothing is downloaded) and the default model
    (``spyglass.models.load()``, EfficientNet-Lite0 with its ImageNet weights). Random weights do
    not change the cost of a method, which is a count of forward and backward passes.

Timings move by 3× from day to day and by 10× under load: run it on a quiet machine and
compare the ratios. ``--quick`` is a smoke run (64 px inputs, two photos, 16 RISE masks, a CRAFT
fit on 4 photos with 3 concepts of 32 px crops): it checks that everything runs, not the figures.
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
    load_images,
    log,
    positive_int,
    require_spyglass,
    run_child,
    warn_if_busy,
)
from attributions import forward_floor

DEFAULT_OUTPUT = RESULTS / "architectures.json"
ARCHITECTURES = ("resnet18", "vit_tiny_patch16_224", "convnext_atto", "efficientnet_lite0")
METHODS = ("saliency", "gradcam", "rise", "craft_fit")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build(name: str, size: int) -> Any:
    """The architecture ``name`` as a :class:`~spyglass.models.VisionModel` taking ``size`` px images."""
    import torch

    from spyglass import models

    if name == "efficientnet_lite0":
        model = models.load()
        if size == model.input_size[0]:
            return model
        network, mean, std = model.network, model.mean.flatten().tolist(), model.std.flatten().tolist()
    else:
        torch.manual_seed(0)
        if name == "resnet18":
            import torchvision

            network = torchvision.models.resnet18(weights=None)
        else:
            import timm

            options = {"img_size": size} if name.startswith("vit") else {}
            network = timm.create_model(name, pretrained=False, **options)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return models.VisionModel(
        network.eval(),
        input_size=(size, size),
        mean=mean,
        std=std,
        class_names=[f"class {i}" for i in range(1000)],
        name=name,
    )


def seconds_per_image(run: Callable[[], Any], images: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / images


def measure_architecture(name: str, photos: Any, args: argparse.Namespace) -> dict[str, Any]:
    import torch.nn.functional as F

    from spyglass import attributions, models
    from spyglass.concepts import Craft

    size = 64 if args.quick else 224
    model = build(name, size)
    pool = F.interpolate(photos, size=(size, size), mode="bilinear", align_corners=False)
    labels = model.predict(pool, top_k=1, batch_size=args.batch_size, progress=False).indices[:, 0]
    floor = statistics.median(forward_floor(model, pool, args.batch_size, args.runs))
    timed = pool[: args.images]
    layer = models.default_layer(model)
    results: dict[str, Any] = {"forward_floor_s": floor, "default_layer": layer}
    methods: dict[str, Callable[[], Any]] = {
        "saliency": lambda: attributions.Saliency(model, batch_size=args.batch_size, progress=False),
        "gradcam": lambda: attributions.GradCAM(model, batch_size=args.batch_size, progress=False),
        "rise": lambda: attributions.RISE(
            model, nb_samples=args.masks, batch_size=args.batch_size, progress=False
        ),
    }
    for method, make in methods.items():
        explainer = make()
        explainer(timed[:1], labels[:1])  # warm-up
        seconds = seconds_per_image(lambda e=explainer: e(timed, labels[: len(timed)]), len(timed))
        results[method] = {"seconds_per_image": seconds, "ratio": seconds / floor}
        log(f"{name}: {method} {seconds:.4f} s/image ({seconds / floor:.1f}× the forward)")
    fitting = pool[: args.craft_images]
    craft = Craft(
        model,
        n_concepts=args.concepts,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        progress=False,
    )
    seconds = seconds_per_image(lambda: craft.fit(fitting, int(labels[0])), len(fitting))
    results["craft_fit"] = {
        "seconds_per_image": seconds,
        "ratio": seconds / floor,
        "images": len(fitting),
        "dictionary": craft.dictionary_,
    }
    log(f"{name}: CRAFT fit {seconds:.4f} s/image ({craft.dictionary_} at {craft.layer})")
    return results


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from spyglass import models
    from spyglass.runtime import allocator_setting

    started = time.perf_counter()
    count = max(args.images, args.craft_images)
    photos, source = load_images(args.data, count, models.load().preprocess, per_class=-(-count // 10))
    per_architecture = {name: measure_architecture(name, photos, args) for name in args.architectures}
    return {
        "quick": args.quick,
        "data": source,
        "threads": torch.get_num_threads(),
        "allocator_setting": allocator_setting(),
        "settings": {
            "images": args.images,
            "masks": args.masks,
            "craft_images": args.craft_images,
            "concepts": args.concepts,
            "patch_size": args.patch_size,
            "batch_size": args.batch_size,
            "size": 64 if args.quick else 224,
        },
        "architectures": per_architecture,
        "seconds": time.perf_counter() - started,
    }


def report_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        "| architecture | default layer | forward s/image | "
        + " | ".join(f"{m} s/image (× forward)" for m in METHODS)
        + " | CRAFT learner |",
        "|---|---|---:|" + "---:|" * len(METHODS) + "---|",
    ]
    for name, row in result["architectures"].items():
        cells = [f"{row[m]['seconds_per_image']:.4f} ({row[m]['ratio']:.1f}×)" for m in METHODS]
        lines.append(
            f"| {name} | {row['default_layer']} | {row['forward_floor_s']:.4f} | "
            + " | ".join(cells)
            + f" | {row['craft_fit']['dictionary']} |"
        )
    return lines


def architectures(text: str) -> tuple[str, ...]:
    chosen = tuple(t for t in text.replace(",", " ").split())
    unknown = [t for t in chosen if t not in ARCHITECTURES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {', '.join(ARCHITECTURES)}; got {text!r}"
        )
    return chosen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--architectures",
        type=architectures,
        default=ARCHITECTURES,
        help=f"Comma-separated subset of {','.join(ARCHITECTURES)} (default all).",
    )
    parser.add_argument("--images", type=positive_int, default=8, help="Photos timed per method (default 8).")
    parser.add_argument("--masks", type=positive_int, default=256, help="RISE's masks (default 256).")
    parser.add_argument(
        "--craft-images", type=positive_int, default=32, help="Photos of the CRAFT fit (default 32)."
    )
    parser.add_argument("--concepts", type=positive_int, default=10, help="CRAFT's concepts (default 10).")
    parser.add_argument("--patch-size", type=positive_int, default=64, help="CRAFT's crops (default 64 px).")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--runs", type=positive_int, default=5, help="Forward-floor repeats (default 5).")
    parser.add_argument("--quick", action="store_true", help="A smoke run: 64 px, few images and masks.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="An ImageFolder tree of photos.")
    parser.add_argument("--allocator", choices=SETTINGS, default="tuned", help="glibc allocator setting.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Where to write the JSON report.")
    parser.add_argument("--child-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.masks, args.craft_images = 2, 16, 4
        args.concepts, args.patch_size, args.runs = 3, 32, 1
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_output is not None:
        args.child_output.write_text(json.dumps(measure(args)))
        return
    require_spyglass()
    load_before = warn_if_busy()
    arguments = [
        "--architectures", ",".join(args.architectures), "--images", str(args.images),
        "--masks", str(args.masks), "--craft-images", str(args.craft_images),
        "--concepts", str(args.concepts), "--patch-size", str(args.patch_size),
        "--batch-size", str(args.batch_size), "--runs", str(args.runs), "--data", str(args.data),
    ]  # fmt: skip
    if args.quick:
        arguments.append("--quick")
    result = run_child(__file__, arguments, args.allocator)
    report = child_report(args.allocator, result, load_before)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    machine = report["machine"]
    print(
        f"spyglass architectures: CPU, {machine['threads']} torch threads, {machine['cpu_count']} CPUs"
        f"{', quick settings (a smoke run)' if result['quick'] else ''}; allocator {report['allocator']}"
    )
    print(f"data: {result['data']}")
    print("\n".join(report_lines(result)))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
