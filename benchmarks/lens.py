"""The atlas builder (Lens): seconds per class, the share that is model compute, 1,000 classes extrapolated.

What it measures
    On the default model (EfficientNet-Lite0) on the CPU, :func:`spyglass.lens.build_atlas`
    in process on ``--classes`` of an Imagenette tree (``../shared/data/imagenette-val``), at
    the ``--fast`` preset and at the default settings (``--presets``), each into a fresh atlas:

    1. **seconds per class**: each class's job, from the atlas's own record (reading its
       photos, CRAFT, importance, crops, concept maps, MACO, UMAP, encoding its images), and
       the one-off prediction of the folder in images per second;
    2. **model compute against the rest**: the run is profiled with ``cProfile``; the model's
       forward passes are the outermost ``nn.Module`` calls (cumulative time of
       ``Module._call_impl``, which counts a nested call once) and its backward passes the
       cumulative time of ``torch.autograd.grad`` and ``torch.autograd.backward``. The rest is
       everything else: NMF (scikit-learn, CPU), the NNLS coding, UMAP (numba), JPEG/PNG
       encoding and the store. cProfile adds a little to Python-heavy parts, so the seconds
       are slightly pessimistic;
    3. **1,000 ImageNet classes, extrapolated** at the default settings: on one GPU, the
       model-compute part divided by ``--gpu-speedup`` (an assumption unless measured on a
       GPU: forward/backward of a small CNN at batch 32 on a data-centre GPU against this
       CPU) plus the rest unchanged (it stays on the CPU), times 1,000; on eight such workers,
       that divided by 8 (independent classes, one GPU and enough CPU cores per worker, the
       data folder on a shared file system, the single writer not a bottleneck: it stores a
       class in well under a second), plus the prediction of 50,000 validation images split
       across them.

    UMAP compiles with numba on its first call in a process (tens of seconds here): each
    preset runs one warm-up UMAP first so that no class pays it, and the report says so; a
    Dask worker pays it once, over its first class.

Allocator
    Run it under the tuned glibc allocator (``make benchmark`` exports it); the JSON records
    whether it was. Absolute seconds move by 3× from day to day on shared machines: quote
    ratios, measured on a quiet machine.

``python benchmarks/lens.py --quick`` is a smoke run (one class, tiny settings, a few photos).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATA,
    RESULTS,
    int_list,
    load_average,
    log,
    machine_info,
    positive_int,
    require_spyglass,
    warn_if_busy,
)

IMAGENET_CLASSES = 1000
IMAGENET_VAL_IMAGES = 50_000
WORKERS = 8


def _model_seconds(profile: cProfile.Profile) -> tuple[float, float]:
    """``(forward, backward)`` seconds: outermost module calls, and autograd's entry points."""
    stats = pstats.Stats(profile)
    forward = backward = 0.0
    for (filename, _line, name), (_cc, _nc, _tt, cumulative, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if filename.endswith(os.path.join("torch", "nn", "modules", "module.py")) and name == "_call_impl":
            forward += cumulative
        elif filename.endswith(os.path.join("torch", "autograd", "__init__.py")) and name in (
            "grad",
            "backward",
        ):
            backward += cumulative
    return forward, backward


def _folder(data: Path, per_folder: int | None, tmp: Path) -> Path:
    """``data``, or a folder of links to its first ``per_folder`` photos of each class folder."""
    if per_folder is None:
        return data
    linked = tmp / "photos"
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        (linked / folder.name).mkdir(parents=True)
        for photo in sorted(folder.iterdir())[:per_folder]:
            (linked / folder.name / photo.name).symlink_to(photo.resolve())
    return linked


def _warm_umap() -> float:
    import numpy as np
    import umap

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    umap.UMAP(n_components=2, n_neighbors=5, init="random", random_state=0, n_jobs=1).fit_transform(
        rng.random((12, 4), dtype=np.float32)
    )
    return time.perf_counter() - start


def run_preset(name: str, settings: Any, classes: list[int], folder: Path, tmp: Path) -> dict[str, Any]:
    import sqlite3

    from spyglass.lens import build_atlas

    root = tmp / f"atlas-{name}"
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    summary = build_atlas(
        "efficientnet_lite0", folder, root, classes=classes, settings=settings, progress=False
    )
    profile.disable()
    total = time.perf_counter() - start
    forward, backward = _model_seconds(profile)
    with sqlite3.connect(root / "atlas.sqlite") as db:
        per_class = dict(db.execute("SELECT id, seconds FROM classes WHERE status = 'done'"))
        failures = dict(db.execute("SELECT id, error FROM classes WHERE status = 'failed'"))
        n_images = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    class_seconds = sum(per_class.values())
    predict_seconds = max(total - class_seconds, 0.0)
    return {
        "preset": name,
        "settings": settings.as_dict(),
        "classes": classes,
        "built": list(summary.built),
        "failed": failures,
        "total_s": total,
        "seconds_per_class": {str(k): v for k, v in per_class.items()},
        "mean_seconds_per_class": class_seconds / len(per_class) if per_class else None,
        "folder_images": n_images,
        "predict_and_overhead_s": predict_seconds,
        "predict_images_per_s": n_images / predict_seconds if predict_seconds > 0 else None,
        "model_forward_s": forward,
        "model_backward_s": backward,
        "model_share": min((forward + backward) / total, 1.0) if total > 0 else None,
    }


def extrapolate(preset: dict[str, Any], gpu_speedup: float) -> dict[str, Any]:
    """1,000 classes of ImageNet val (50 photos each) on one GPU and on eight workers."""
    per_class = preset["mean_seconds_per_class"]
    if per_class is None:
        return {}
    share = preset["model_share"] or 0.0
    model, rest = per_class * share, per_class * (1 - share)
    gpu_class = rest + model / gpu_speedup
    cpu_rate = preset["predict_images_per_s"] or 1.0
    predict = IMAGENET_VAL_IMAGES / (cpu_rate * gpu_speedup)
    one = IMAGENET_CLASSES * gpu_class + predict
    return {
        "assumptions": (
            f"model compute {gpu_speedup:g}x faster on the GPU, the rest "
            f"({100 * (1 - share):.0f}% of a class "
            "here) unchanged on the CPU; prediction of 50,000 images at the same speed-up; eight workers "
            "share the classes evenly, one GPU each, data on a shared file system"
        ),
        "cpu_one_worker_h": (IMAGENET_CLASSES * per_class + IMAGENET_VAL_IMAGES / cpu_rate) / 3600,
        "gpu_seconds_per_class": gpu_class,
        "one_gpu_h": one / 3600,
        "eight_gpus_h": (IMAGENET_CLASSES * gpu_class / WORKERS + predict / WORKERS) / 3600,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from spyglass.lens import FAST, AtlasSettings
    from spyglass.runtime import allocator_setting

    torch.set_num_threads(args.threads)
    load_before = warn_if_busy()
    presets: dict[str, Any] = {"fast": FAST, "default": AtlasSettings()}
    if args.quick:
        tiny = {"max_images": 6, "n_concepts": 3, "patch_size": 112, "n_crops": 2, "n_maps": 1}
        presets = {"quick": AtlasSettings(**{**tiny, "maco_steps": 2, "maco_size": 32, "maco_crops": 1})}
    chosen = list(presets) if args.quick else args.presets
    results = []
    with tempfile.TemporaryDirectory(prefix="spyglass-lens-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folder = _folder(args.data, 8 if args.quick else args.per_folder, tmp)
        warm = _warm_umap()
        log(f"UMAP warm-up (numba compilation, paid once per process): {warm:.1f} s")
        for name in chosen:
            log(f"building preset {name} on classes {args.classes} …")
            results.append(run_preset(name, presets[name], list(args.classes), folder, tmp))
    extrapolated = {r["preset"]: extrapolate(r, args.gpu_speedup) for r in results}
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": str(args.data),
        "per_folder": args.per_folder,
        "allocator": allocator_setting(),
        "umap_warmup_s": warm,
        "gpu_speedup_assumed": args.gpu_speedup,
        "machine": machine_info(torch.__version__, torch.get_num_threads(), load_before, load_average()),
        "presets": results,
        "extrapolated": extrapolated,
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"build_atlas, EfficientNet-Lite0 on the CPU ({result['machine']['threads']} threads, allocator "
        f"{result['allocator']}), {result['data']}; UMAP compiled beforehand "
        f"({result['umap_warmup_s']:.0f} s)",
        "",
        "| preset | classes | s / class | model forward s | model backward s | model share "
        "| folder img/s, with model load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["presets"]:
        per_class = r["mean_seconds_per_class"]
        rate = r["predict_images_per_s"]
        lines.append(
            f"| {r['preset']} | {len(r['built'])} | {'–' if per_class is None else f'{per_class:.1f}'} | "
            f"{r['model_forward_s']:.1f} | {r['model_backward_s']:.1f} | "
            f"{100 * (r['model_share'] or 0):.0f}% | "
            f"{'–' if rate is None else f'{rate:.0f}'} |"
        )
    lines += ["", "| preset | 1,000 classes, this CPU (h) | one GPU (h) | eight GPUs (h) | assumptions |"]
    lines.append("|---|---:|---:|---:|---|")
    for name, e in result["extrapolated"].items():
        if e:
            lines.append(
                f"| {name} | {e['cpu_one_worker_h']:.1f} | {e['one_gpu_h']:.2f} | {e['eight_gpus_h']:.2f} | "
                f"{e['assumptions']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="An Imagenette (ImageFolder) tree.")
    parser.add_argument(
        "--classes", type=lambda text: int_list(text, "class"), default=(0, 217), help="Class ids to build."
    )
    parser.add_argument("--presets", nargs="+", choices=("fast", "default"), default=["fast", "default"])
    parser.add_argument(
        "--per-folder",
        type=positive_int,
        default=60,
        help="Photos of each class folder (the folder is predicted).",
    )
    parser.add_argument(
        "--gpu-speedup", type=float, default=30.0, help="Assumed GPU/CPU model-compute ratio."
    )
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run: one class, tiny settings, 8 photos a folder."
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "lens.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.classes = args.classes[:1]
    require_spyglass()
    if not args.data.is_dir():
        raise SystemExit(f"no photos at {args.data}: give --data an Imagenette tree")
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(report(result))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
