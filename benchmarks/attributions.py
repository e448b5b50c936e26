"""Attribution methods on the CPU: against Captum, against the forward floor, and in memory.

What it measures
    On the default model (``spyglass.models.load()``, EfficientNet-Lite0), on the CPU, on
    real photos, with every method built once and called with ``progress=False``:

    1. **Captum ratio.** For every registered method that Captum also has, the time of
       spyglass's method over Captum's at identical settings: the same images and targets,
       the same options (steps, samples, noise, windows, feature mask, fill), and the same
       number of model evaluations per forward pass (``--batch-size``). Target <= 1.0.
    2. **Floor ratio.** For every black-box method (occlusion, RISE, Sobol, HSIC, LIME,
       KernelSHAP), its time over its floor: the forward passes it actually makes, counted
       by a hook on the model's first layer, times the per-image forward time measured at
       the same batch size in the same process (``benchmarks/forward.py`` measures the
       same thing on its own). Target <= 1.15.
    3. **Memory.** The peak RSS growth of a cheap gradient method and a cheap black-box
       method on 16 and on 256 images at the same batch size, each case in a fresh
       process. Target: the same within 10 % once the images handed in and the maps
       handed back are set aside.

    Each method gets a warm-up call on one image, then up to ``--repeats`` timed calls on
    ``--images`` photos (one photo for the costly Sobol and RISE, one batch for the
    one-gradient methods, which are too quick to time on fewer); the median is reported.
    The repeats stop early once a method's timed calls have taken ``--time-budget``
    seconds: one call of Sobol at its defaults is already ~250 batches. spyglass's and
    Captum's calls alternate, so a change in the machine's load hits both.

Allocator
    The children run under the tuned glibc allocator by default
    (``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000``, see forward.py and
    DESIGN.md); ``--allocator default`` removes it. The setting is in the table header and
    the JSON (``benchmarks/results/attributions.json``).

Run ``python benchmarks/attributions.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from torch import Tensor, nn

DEFAULT_OUTPUT = RESULTS / "attributions.json"
DEFAULT_BATCH_SIZE = 16  # the lowest per-image forward cost on 2 cores (forward.py)
DEFAULT_IMAGES, QUICK_IMAGES = 2, 1
DEFAULT_REPEATS, QUICK_REPEATS = 3, 1
DEFAULT_BUDGET = 60.0
DEFAULT_MEMORY_IMAGES, QUICK_MEMORY_IMAGES = (16, 256), (16, 64)
FLOOR_RUNS, QUICK_FLOOR_RUNS = 5, 3  # one batch each, before and after the methods
MEMORY_PHOTOS = 16  # distinct photos, tiled to fill a memory case

CAPTUM_TARGET, FLOOR_TARGET, MEMORY_TARGET = 1.0, 1.15, 1.10

# The names --methods accepts besides the Captum peers' (this parent process never imports
# spyglass); whether a method gets a floor ratio is its registered kind, read in the child.
BLACK_BOX = ("occlusion", "rise", "sobol", "hsic", "lime", "kernel_shap")
ONE_IMAGE = ("sobol", "rise")  # thousands of forward passes per image
# One gradient per image: a whole batch of photos, or the call is too short to time well.
ONE_BATCH = ("saliency", "gradient_input", "gradcam", "guided_backprop", "deconvnet")
GREY = 0.5  # the fill spyglass defaults to on this model (its normalisation mean), given to both


# What makes each comparison with Captum like for like, at any settings: both sides get the
# same fill, baseline, noise and seed, and LIME/KernelSHAP a grid (a feature mask Captum can be
# given too; SLIC would differ in its details).
_NOISE_TUNNEL = {"noise": 0.2, "seed": 0}
_SURROGATE = {"segmentation": "grid", "grid_size": 8, "value": GREY, "seed": 0}
PEER_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"baseline": 0.0},
    "smoothgrad": _NOISE_TUNNEL,
    "vargrad": _NOISE_TUNNEL,
    "squaregrad": _NOISE_TUNNEL,
    "occlusion": {"value": GREY},
    "lime": _SURROGATE,
    "kernel_shap": _SURROGATE,
    "rise": {"seed": 0},
    "sobol": {"seed": 0},
    "hsic": {"seed": 0},
}
# Full runs: the methods' defaults where a minute of timed calls affords them (Integrated
# Gradients, the noise tunnel, Sobol', HSIC: written out, the peers read them), fewer samples or
# larger windows where it does not. Quick runs take each method's own "quick" settings.
FULL_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"steps": 50},
    "smoothgrad": {"nb_samples": 50},
    "vargrad": {"nb_samples": 50},
    "squaregrad": {"nb_samples": 50},
    "occlusion": {"patch": 32, "stride": 16},
    "lime": {"nb_samples": 128},
    "kernel_shap": {"nb_samples": 128},
    "rise": {"nb_samples": 1000},
    "sobol": {"grid_size": 11, "nb_design": 32},
    "hsic": {"grid_size": 8, "nb_design": 500},
}


def method_options(quick: bool) -> dict[str, dict[str, Any]]:
    """spyglass's options for each registered method; its Captum peer is given the same values.

    Quick: the method's ``"quick"`` settings (``attributions.method_settings``); full:
    :data:`FULL_OPTIONS`; then :data:`PEER_OPTIONS`. Options are listed in the order of the
    method's signature, as the report's settings column shows them.
    """
    import inspect

    from spyglass import attributions

    options = {}
    for name in attributions.list_methods():
        chosen = attributions.method_settings(name, "quick") if quick else dict(FULL_OPTIONS.get(name, {}))
        chosen.update(PEER_OPTIONS.get(name, {}))
        order = list(inspect.signature(attributions.method_class(name)).parameters)
        options[name] = dict(sorted(chosen.items(), key=lambda item: order.index(item[0])))
    return options


# Memory cases: cheap settings, so that 256 images take well under two minutes.
MEMORY_OPTIONS: dict[str, dict[str, Any]] = {
    "saliency": {},
    "occlusion": {"patch": 112, "stride": 112, "value": GREY},  # 2 × 2 windows + f(x): 5 passes
    "rise": {"nb_samples": 16, "seed": 0},
}


# ------------------------------------------------------------------------- Captum peers

Explain = Callable[["Tensor", "Tensor"], "Tensor"]
PeerFactory = Callable[["nn.Module", Any, int, dict[str, Any]], Explain]


def chunked(explain: Explain, size: int) -> Explain:
    """Call ``explain`` on ``size`` images at a time: Captum's gradient methods do not batch."""

    def run(images: Tensor, targets: Tensor) -> Tensor:
        import torch

        parts = [explain(images[i : i + size], targets[i : i + size]) for i in range(0, len(images), size)]
        return torch.cat(parts)

    return run


def grid_mask(grid_size: int, height: int, width: int) -> Tensor:
    """``(1, 1, H, W)`` cell labels: spyglass's ``segmentation="grid"`` (cells of a nearest upsampling)."""
    import torch

    rows = torch.arange(height) * grid_size // height
    columns = torch.arange(width) * grid_size // width
    return (rows[:, None] * grid_size + columns[None, :]).view(1, 1, height, width)


def peer_saliency(model: nn.Module, ours: Any, batch_size: int, options: dict[str, Any]) -> Explain:
    from captum.attr import Saliency

    method = Saliency(model)
    return chunked(lambda x, y: method.attribute(x, target=y, abs=True).amax(dim=1), batch_size)


def peer_gradient_input(model: nn.Module, ours: Any, batch_size: int, options: dict[str, Any]) -> Explain:
    from captum.attr import InputXGradient

    method = InputXGradient(model)
    return chunked(lambda x, y: method.attribute(x, target=y).sum(dim=1), batch_size)


def peer_integrated_gradients(
    model: nn.Module, ours: Any, batch_size: int, options: dict[str, Any]
) -> Explain:
    from captum.attr import IntegratedGradients

    method = IntegratedGradients(model)

    def explain(x: Tensor, y: Tensor) -> Tensor:
        return method.attribute(
            x,
            baselines=options["baseline"],
            target=y,
            n_steps=options["steps"],
            method="riemann_trapezoid",  # ours: the trapezoidal rule, both ends included
            internal_batch_size=batch_size,
        ).sum(dim=1)

    return chunked(explain, batch_size)  # internal_batch_size must not be below the images per call


def noise_tunnel_peer(nt_type: str, absolute: bool) -> PeerFactory:
    """Captum's NoiseTunnel over Saliency(abs=False): gradients in, spyglass's statistic out."""

    def factory(model: nn.Module, ours: Any, batch_size: int, options: dict[str, Any]) -> Explain:
        from captum.attr import NoiseTunnel, Saliency

        method = NoiseTunnel(Saliency(model))

        def explain(x: Tensor, y: Tensor) -> Tensor:
            statistic = method.attribute(
                x,
                nt_type=nt_type,
                nt_samples=options["nb_samples"],
                nt_samples_batch_size=batch_size,
                stdevs=options["noise"],  # spyglass's noise is σ in [0, 1] pixel units, as here
                target=y,
                abs=False,
            )
            return (statistic.abs() if absolute else statistic).amax(dim=1)

        return chunked(explain, 1)  # one image × batch_size noisy copies per call

    return factory


def peer_gradcam(model: nn.Module, ours: Any, batch_size: int, options: dict[str, Any]) -> Explain:
    from captum.attr import LayerAttribution, LayerGradCam

    layer = getattr(model, "network", model).get_submodule(ours.layer)  # spyglass names it in the network
    method = LayerGradCam(model, layer)

    def explain(x: Tensor, y: Tensor) -> Tensor:
        cam = method.attribute(x, target=y, relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]

    return chunked(explain, batch_size)


def modified_relu_peer(class_name: str) -> PeerFactory:
    def factory(model: nn.Module, ours: Any, batch_size: int, options: dict[str, Any]) -> Explain:
        import captum.attr

        method = getattr(captum.attr, class_name)(model)
        return chunked(lambda x, y: method.attribute(x, target=y).abs().amax(dim=1), batch_size)

    return factory


def peer_occlusion(model: nn.Module, ours: Any, batch_size: int, options: dict[str, Any]) -> Explain:
    from captum.attr import Occlusion

    method = Occlusion(model)
    patch, stride = options["patch"], options["stride"]

    def explain(x: Tensor, y: Tensor) -> Tensor:
        return method.attribute(
            x,
            sliding_window_shapes=(3, patch, patch),
            strides=(3, stride, stride),
            baselines=options["value"],
            target=y,
            perturbations_per_eval=batch_size,
        ).mean(dim=1)

    return chunked(explain, 1)  # perturbations_per_eval counts per image: one image per call


def surrogate_peer(class_name: str) -> PeerFactory:
    """Captum's Lime (with a ridge surrogate, as spyglass's) or KernelShap on the same grid cells."""

    def factory(model: nn.Module, ours: Any, batch_size: int, options: dict[str, Any]) -> Explain:
        import captum.attr
        from captum._utils.models.linear_model import SkLearnRidge

        cls = getattr(captum.attr, class_name)
        surrogate = {"interpretable_model": SkLearnRidge(alpha=1.0)} if class_name == "Lime" else {}
        method = cls(model, **surrogate)

        def explain(x: Tensor, y: Tensor) -> Tensor:
            return method.attribute(
                x,
                target=y,
                baselines=options["value"],
                feature_mask=grid_mask(options["grid_size"], *x.shape[-2:]),
                n_samples=options["nb_samples"],
                perturbations_per_eval=batch_size,
            ).mean(dim=1)

        return chunked(explain, 1)

    return factory


PEERS: dict[str, tuple[str, PeerFactory]] = {
    "saliency": ("Saliency(abs=True), max over channels", peer_saliency),
    "gradient_input": ("InputXGradient, sum over channels", peer_gradient_input),
    "integrated_gradients": (
        'IntegratedGradients(method="riemann_trapezoid", internal_batch_size=batch), sum over channels',
        peer_integrated_gradients,
    ),
    "smoothgrad": (
        'NoiseTunnel(Saliency)(nt_type="smoothgrad", abs=False), |·| max over channels',
        noise_tunnel_peer("smoothgrad", absolute=True),
    ),
    "vargrad": (
        'NoiseTunnel(Saliency)(nt_type="vargrad", abs=False), max over channels',
        noise_tunnel_peer("vargrad", absolute=False),
    ),
    "squaregrad": (
        'NoiseTunnel(Saliency)(nt_type="smoothgrad_sq", abs=False), max over channels',
        noise_tunnel_peer("smoothgrad_sq", absolute=False),
    ),
    "gradcam": (
        "LayerGradCam(relu_attributions=True) + LayerAttribution.interpolate(bilinear)",
        peer_gradcam,
    ),
    "guided_backprop": ("GuidedBackprop, |·| max over channels", modified_relu_peer("GuidedBackprop")),
    "deconvnet": ("Deconvolution, |·| max over channels", modified_relu_peer("Deconvolution")),
    "occlusion": ("Occlusion(perturbations_per_eval=batch), one image per call", peer_occlusion),
    "lime": ("Lime(SkLearnRidge(alpha=1)), grid feature mask", surrogate_peer("Lime")),
    "kernel_shap": ("KernelShap, grid feature mask", surrogate_peer("KernelShap")),
}
KNOWN_METHODS = tuple(dict.fromkeys([*PEERS, *BLACK_BOX]))


def formula_forwards(name: str, options: dict[str, Any], height: int, width: int) -> tuple[int, str] | None:
    """Forward passes per image that the method's docstring promises, and the formula, where known."""
    if name == "occlusion":
        p, s = options["patch"], options["stride"]
        rows, cols = (math.ceil((length - p) / s) + 1 for length in (height, width))
        return rows * cols + 1, f"{rows}×{cols} windows + f(x)"
    if name in ("rise", "lime"):
        return options["nb_samples"], "nb_samples"
    if name == "kernel_shap":
        segments = options["grid_size"] ** 2
        return min(options["nb_samples"], 2**segments), "min(nb_samples, 2^segments)"
    if name == "sobol":
        return options["nb_design"] * (options["grid_size"] ** 2 + 2), "nb_design·(grid_size²+2)"
    if name == "hsic":
        return options["nb_design"], "nb_design"
    return None


# ------------------------------------------------------------------------------ timing


class RowCounter:
    """Counts the images entering the model's first layer: one per forward pass of one image.

    A hook on the first layer, rather than on the model, also counts the methods that run
    only the bottom of a split model (Grad-CAM) or wrap the model in a function.
    """

    def __init__(self, model: nn.Module, height: int, width: int) -> None:
        import torch

        order: list[tuple[str, Any]] = []
        leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
        handles = [
            module.register_forward_pre_hook(lambda m, _args, name=name: order.append((name, m)))
            for name, module in leaves
        ]
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, height, width))
        finally:
            for handle in handles:
                handle.remove()
        self.layer, module = order[0]
        self.rows = 0
        self.handle = module.register_forward_pre_hook(self._count)

    def _count(self, _module: Any, args: tuple[Any, ...]) -> None:
        self.rows += int(args[0].shape[0])

    def reset(self) -> None:
        self.rows = 0

    def close(self) -> None:
        self.handle.remove()


def time_calls(
    calls: dict[str, Explain],
    images: Tensor,
    targets: Tensor,
    counter: RowCounter,
    repeats: int,
    budget: float,
) -> tuple[dict[str, dict[str, Any]], dict[str, Tensor]]:
    """Warm each call up on one image, then time them in turn; the median and every run per call."""
    for explain in calls.values():
        explain(images[:1], targets[:1])
    runs: dict[str, dict[str, list[Any]]] = {key: {"seconds": [], "forwards": []} for key in calls}
    maps: dict[str, Tensor] = {}
    for _ in range(repeats):
        for key, explain in calls.items():
            counter.reset()
            start = time.perf_counter()
            maps[key] = explain(images, targets)
            runs[key]["seconds"].append(time.perf_counter() - start)
            runs[key]["forwards"].append(counter.rows)
        if max(sum(run["seconds"]) for run in runs.values()) >= budget:
            break
    results = {
        key: {
            "seconds": statistics.median(run["seconds"]),
            "forwards": run["forwards"][-1],
            "runs_seconds": run["seconds"],
            "runs_forwards": run["forwards"],
        }
        for key, run in runs.items()
    }
    return results, maps


def mean_pearson(ours: Tensor, theirs: Tensor) -> float:
    """Pearson correlation of each image's two maps, averaged over the images."""
    import torch

    values = []
    for a, b in zip(ours, theirs, strict=True):
        pair = torch.stack([a.detach().flatten(), b.detach().flatten()]).double()
        values.append(float(torch.corrcoef(pair)[0, 1]))
    return statistics.fmean(values)


def forward_floor(model: nn.Module, photos: Tensor, batch_size: int, runs: int) -> list[float]:
    """Seconds per image of ``runs`` forward passes of one batch of photos (after a warm-up)."""
    from spyglass import engines

    batch = photos[:batch_size]
    engines.batched_forward(model, batch, batch_size=batch_size, progress=False)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        engines.batched_forward(model, batch, batch_size=batch_size, progress=False)
        seconds.append((time.perf_counter() - start) / len(batch))
    return seconds


def settings_text(options: dict[str, Any], extra: dict[str, Any]) -> str:
    shown = {**{k: v for k, v in options.items() if k != "seed"}, **extra}
    return ", ".join(f"{key}={value}" for key, value in shown.items()) or "defaults"


def images_for(name: str, args: argparse.Namespace) -> int:
    if name in ONE_IMAGE:
        return 1
    return max(args.images, args.batch_size) if name in ONE_BATCH else args.images


def benchmark_method(
    name: str,
    model: nn.Module,
    pool: Tensor,
    labels: Tensor,
    counter: RowCounter,
    args: argparse.Namespace,
    captum_version: str | None,
) -> dict[str, Any]:
    from spyglass import attributions

    options = method_options(args.quick)[name]
    n = images_for(name, args)
    images, targets = pool[:n], labels[:n]
    ours = attributions.create(name, model, batch_size=args.batch_size, progress=False, **options)
    layer = {"layer": ours.layer} if hasattr(ours, "layer") else {}
    entry: dict[str, Any] = {
        "images": n,
        "options": options,
        "settings": settings_text(options, layer),
        "black_box": attributions.method_class(name).kind == "black-box",
    }
    calls: dict[str, Explain] = {"spyglass": ours}
    if name in PEERS:
        label, factory = PEERS[name]
        entry["captum_call"] = label
        if captum_version is None:
            entry["captum_skipped"] = "captum is not installed"
        else:
            calls["captum"] = factory(model, ours, args.batch_size, options)
    results, maps = time_calls(calls, images, targets, counter, args.repeats, args.time_budget)
    entry.update(results)
    line = f"  {name:<21} spyglass {results['spyglass']['seconds']:7.2f} s"
    if "captum" in results:
        entry["captum_ratio"] = results["spyglass"]["seconds"] / results["captum"]["seconds"]
        entry["pearson"] = mean_pearson(maps["spyglass"], maps["captum"])
        line += f", Captum {results['captum']['seconds']:7.2f} s (ratio {entry['captum_ratio']:.2f})"
    formula = formula_forwards(name, options, *images.shape[-2:])
    if formula is not None:
        entry["formula_forwards"] = formula[0] * n
        entry["formula"] = formula[1]
    log(f"{line}, {results['spyglass']['forwards']} forwards")
    return entry


def measure_timing(args: argparse.Namespace) -> dict[str, Any]:
    """Time the methods in this process, under whatever allocator setting it started with."""
    import torch

    from spyglass import attributions, engines, models
    from spyglass.runtime import allocator_setting

    try:
        import captum

        captum_version: str | None = captum.__version__
    except ImportError:
        captum_version = None
        log("captum is not installed: the Captum ratios are skipped")
    started = time.perf_counter()
    model = models.load()
    pool, source = load_images(args.data, max(args.images, args.batch_size), model.preprocess)
    # Captum says it switched on the inputs' requires_grad, or hooked the ReLUs: not news.
    warnings.filterwarnings("ignore", message="Input Tensor .* did not already require gradients")
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
    # Targets: the model's own top class (the cost does not depend on it).
    labels = engines.batched_forward(model, pool, batch_size=args.batch_size, progress=False).argmax(dim=1)
    counter = RowCounter(model, *pool.shape[-2:])
    registered = attributions.list_methods()
    floor_runs = QUICK_FLOOR_RUNS if args.quick else FLOOR_RUNS
    floor_before = forward_floor(model, pool, args.batch_size, floor_runs)

    methods: dict[str, dict[str, Any]] = {}
    for name in args.methods:
        if name not in registered:
            methods[name] = {"skipped": "not registered in spyglass.attributions (yet)"}
            log(f"  {name:<21} skipped: not registered")
            continue
        try:
            methods[name] = benchmark_method(name, model, pool, labels, counter, args, captum_version)
        except Exception as error:  # a method still being written must not stop the others
            methods[name] = {"error": f"{type(error).__name__}: {error}"}
            log(f"  {name:<21} failed: {methods[name]['error']}")

    floor_after = forward_floor(model, pool, args.batch_size, floor_runs)
    per_image = statistics.median(floor_before + floor_after)
    for entry in methods.values():
        if entry.get("black_box") and "spyglass" in entry:
            entry["floor_seconds"] = entry["spyglass"]["forwards"] * per_image
            entry["floor_ratio"] = entry["spyglass"]["seconds"] / entry["floor_seconds"]
    counter.close()
    return {
        "allocator": allocator_setting(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "captum": captum_version,
        "data": source,
        "registered": registered,
        "counted_layer": counter.layer,
        "floor": {
            "batch_size": args.batch_size,
            "ms_per_image": 1000 * per_image,
            "runs_ms_per_image_before": [1000 * s for s in floor_before],
            "runs_ms_per_image_after": [1000 * s for s in floor_after],
        },
        "methods": methods,
        "seconds": time.perf_counter() - started,
    }


# ------------------------------------------------------------------------------ memory


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def measure_memory(args: argparse.Namespace) -> dict[str, Any]:
    """One memory case in this fresh process: the peak RSS growth while the method runs."""
    import torch

    from spyglass import attributions, engines, models
    from spyglass.runtime import allocator_setting

    name, count = args.memory_method, args.memory_count
    options = MEMORY_OPTIONS.get(name, method_options(args.quick).get(name, {}))
    model = models.load()
    photos, source = load_images(args.data, min(count, MEMORY_PHOTOS), model.preprocess)
    # One image at a time, so that the baseline holds no batch's working memory.
    labels = engines.batched_forward(model, photos, batch_size=1, progress=False).argmax(dim=1)
    method = attributions.create(name, model, batch_size=args.batch_size, progress=False, **options)
    baseline = peak_rss_bytes()

    # The caller's input: the photos tiled into one tensor, written in place (no transient copy).
    images = torch.empty((count, *photos.shape[1:]), dtype=photos.dtype)
    targets = torch.empty(count, dtype=labels.dtype)
    for start in range(0, count, len(photos)):
        stop = min(start + len(photos), count)
        images[start:stop] = photos[: stop - start]
        targets[start:stop] = labels[: stop - start]
    started = time.perf_counter()
    maps = method(images, targets)
    seconds = time.perf_counter() - started
    peak = peak_rss_bytes()
    return {
        "method": name,
        "options": options,
        "settings": settings_text(options, {}),
        "images": count,
        "batch_size": args.batch_size,
        "seconds": seconds,
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "growth_bytes": peak - baseline,
        "input_bytes": images.element_size() * images.nelement(),
        "output_bytes": maps.element_size() * maps.nelement(),
        "allocator": allocator_setting(),
        "data": source,
    }


def default_memory_methods(registered: Sequence[str]) -> list[str]:
    """Saliency and the first registered of occlusion and RISE."""
    chosen = [name for name in ("saliency",) if name in registered]
    chosen += [name for name in ("occlusion", "rise") if name in registered][:1]
    return chosen


def summarize_memory(cases: list[dict[str, Any]]) -> None:
    """Ratios of each case to the smallest image count of the same method, in place."""
    for name in dict.fromkeys(case["method"] for case in cases):
        measured = [case for case in cases if case["method"] == name and "growth_bytes" in case]
        if not measured:
            continue
        smallest = min(measured, key=lambda case: case["images"])
        for case in measured:
            case["without_input_bytes"] = case["growth_bytes"] - case["input_bytes"]
            case["working_bytes"] = case["without_input_bytes"] - case["output_bytes"]
        for key in ("without_input", "working"):
            reference = smallest[f"{key}_bytes"]
            for case in measured:
                case[f"{key}_ratio"] = case[f"{key}_bytes"] / reference if reference > 0 else None


# ------------------------------------------------------------------------------ parent


def child_arguments(args: argparse.Namespace) -> list[str]:
    arguments = [
        "--methods",
        ",".join(args.methods),
        "--images",
        str(args.images),
        "--batch-size",
        str(args.batch_size),
        "--repeats",
        str(args.repeats),
        "--time-budget",
        str(args.time_budget),
        "--data",
        str(args.data),
    ]
    return [*arguments, "--quick"] if args.quick else arguments


def mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def captum_table(methods: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| method | settings | images | spyglass (s) | Captum (s) | spyglass / Captum | "
        f"≤ {CAPTUM_TARGET:.2f} | forwards spyglass / Captum | Pearson |",
        "|---|---|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for name, entry in methods.items():
        if "captum_ratio" not in entry:
            continue
        ours, theirs = entry["spyglass"], entry["captum"]
        lines.append(
            f"| {name} | {entry['settings']} | {entry['images']} | {ours['seconds']:.2f} | "
            f"{theirs['seconds']:.2f} | {entry['captum_ratio']:.2f} | "
            f"{mark(entry['captum_ratio'] <= CAPTUM_TARGET)} | "
            f"{ours['forwards']} / {theirs['forwards']} | {entry['pearson']:.3f} |"
        )
    return lines


def floor_table(methods: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"| method | settings | images | forwards counted | formula | floor (s) | spyglass (s) | "
        f"ratio | ≤ {FLOOR_TARGET:.2f} |",
        "|---|---|---:|---:|---|---:|---:|---:|:---:|",
    ]
    for name, entry in methods.items():
        if "floor_ratio" not in entry:
            continue
        formula = f"{entry['formula_forwards']} ({entry['formula']})" if "formula" in entry else "n/a"
        lines.append(
            f"| {name} | {entry['settings']} | {entry['images']} | {entry['spyglass']['forwards']} | "
            f"{formula} | {entry['floor_seconds']:.2f} | {entry['spyglass']['seconds']:.2f} | "
            f"{entry['floor_ratio']:.2f} | {mark(entry['floor_ratio'] <= FLOOR_TARGET)} |"
        )
    return lines


def megabytes(count: float) -> str:
    return f"{count / 2**20:.0f}"


def memory_table(cases: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| method | settings | images | time (s) | peak growth (MiB) | − input (MiB) | "
        "− input − output (MiB) | ratio, − input | ratio, − input − output | "
        f"within {100 * (MEMORY_TARGET - 1):.0f} % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for case in cases:
        if "error" in case:
            lines.append(f"| {case['method']} | | {case['images']} | failed: {case['error']} | | | | | | |")
            continue
        ratios = [case["without_input_ratio"], case["working_ratio"]]
        shown = [f"{r:.2f}" if r is not None else "n/a" for r in ratios]
        ok = case["working_ratio"] is not None and case["working_ratio"] <= MEMORY_TARGET
        lines.append(
            f"| {case['method']} | {case['settings']} | {case['images']} | {case['seconds']:.1f} | "
            f"{megabytes(case['growth_bytes'])} | {megabytes(case['without_input_bytes'])} | "
            f"{megabytes(case['working_bytes'])} | {shown[0]} | {shown[1]} | {mark(ok)} |"
        )
    return lines


def table_or_none(lines: list[str]) -> str:
    return "\n".join(lines) if len(lines) > 2 else "(no method measured)"


def print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    timing, machine = report["timing"], report["machine"]
    methods = timing["methods"]
    print(
        f"spyglass attributions: EfficientNet-Lite0, CPU, {machine['threads']} torch threads, "
        f"{machine['cpu_count']} CPUs, torch {machine['torch']}, captum {timing['captum']}"
    )
    print(f"data: {timing['data']}")
    print(f"allocator ({report['allocator']}): {timing['allocator']}")
    before, after = machine["load_average_1min_before"], machine["load_average_1min_after"]
    if before is not None and after is not None:
        print(f"1-minute load average: {before:.2f} before, {after:.2f} after")
    print(
        f"batch_size {args.batch_size}; {args.images} image(s) per call ({', '.join(ONE_BATCH)}: one batch; "
        f"{', '.join(ONE_IMAGE)}: 1); median of up "
        f"to {args.repeats} timed call(s) after a warm-up call on one image, at most "
        f"{args.time_budget:.0f} s of timed calls per method; {'quick' if args.quick else 'full'} settings"
    )
    print()
    allocator = f"{report['allocator']} allocator"
    print(f"## spyglass / Captum, identical settings (target ≤ {CAPTUM_TARGET:.2f}; {allocator})")
    print()
    print(table_or_none(captum_table(methods)))
    print()
    floor = timing["floor"]
    print(f"## black-box methods / their forward floor (target ≤ {FLOOR_TARGET:.2f}; {allocator})")
    print()
    print(
        f"floor: {floor['ms_per_image']:.1f} ms per image per forward pass at batch {floor['batch_size']} "
        f"(median of one-batch runs before and after the methods); forwards counted at the model's "
        f"first layer ({timing['counted_layer']})"
    )
    print()
    print(table_or_none(floor_table(methods)))
    print()
    if report["memory"]:
        counts = " vs ".join(str(n) for n in args.memory_images)
        print(
            f"## peak memory, {counts} images at batch_size {args.batch_size} "
            f"(target: within {100 * (MEMORY_TARGET - 1):.0f} % once input and output are set aside; "
            f"{allocator})"
        )
        print()
        print("\n".join(memory_table(report["memory"])))
        print()
        print(
            "peak growth: ru_maxrss after the call minus ru_maxrss after loading the model, in a fresh "
            "process per row; input = the images handed in (N×3×224×224 float32), output = the maps "
            "handed back (N×224×224 float32); ratios are to the smallest image count"
        )
        print()
    for name, entry in methods.items():
        if "skipped" in entry or "error" in entry:
            print(f"- {name}: {entry.get('skipped') or 'failed: ' + entry['error']}")
        elif "captum_skipped" in entry:
            print(f"- {name}: Captum ratio skipped ({entry['captum_skipped']})")
    others = [name for name in timing["registered"] if name not in KNOWN_METHODS]
    if others:
        print(f"- not benchmarked (no Captum peer, not black-box): {', '.join(others)}")
    print(f"\nwall time {report['wall_seconds']:.0f} s; results written to {args.output}")


def orchestrate(args: argparse.Namespace) -> None:
    require_spyglass()
    load_before = warn_if_busy()
    started = time.perf_counter()
    log(f"[{args.allocator} allocator] timing {len(args.methods)} method(s) in a child process ...")
    timing = run_child(__file__, [*child_arguments(args), "--child", "timing"], args.allocator)
    log(f"[{args.allocator} allocator] {timing['allocator']}")

    if args.memory_methods is None:
        memory_methods = default_memory_methods(timing["registered"])
    else:
        memory_methods = [name for name in args.memory_methods if name in timing["registered"]]
    memory: list[dict[str, Any]] = []
    for name in memory_methods:
        for count in args.memory_images:
            log(f"[{args.allocator} allocator] memory: {name} on {count} images in a fresh process ...")
            case = [*child_arguments(args), "--child", "memory", "--memory-method", name]
            try:
                memory.append(run_child(__file__, [*case, "--memory-count", str(count)], args.allocator))
            except subprocess.CalledProcessError as error:
                failed = f"child exited with {error.returncode}"
                memory.append({"method": name, "images": count, "error": failed})
    summarize_memory(memory)

    wall = time.perf_counter() - started
    machine = machine_info(timing["torch"], timing["threads"], load_before, load_average())
    report = {
        "benchmark": "attributions",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "model": "efficientnet_lite0 (spyglass.models.load())",
        "device": "cpu",
        "machine": machine,
        "data": timing["data"],
        "allocator": args.allocator,
        "env": TUNED_ENV if args.allocator == "tuned" else {},
        "mode": "quick" if args.quick else "full",
        "batch_size": args.batch_size,
        "images": args.images,
        "repeats": args.repeats,
        "time_budget_seconds": args.time_budget,
        "targets": {
            "captum_ratio": CAPTUM_TARGET,
            "floor_ratio": FLOOR_TARGET,
            "memory_ratio": MEMORY_TARGET,
        },
        "wall_seconds": wall,
        "timing": timing,
        "memory": memory,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report, args)


# --------------------------------------------------------------------------- arguments


def method_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part for part in text.replace(",", " ").split()))
    unknown = [name for name in names if name not in KNOWN_METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(unknown)}; this benchmark knows {', '.join(KNOWN_METHODS)}"
        )
    return names


def memory_method_list(text: str) -> tuple[str, ...]:
    return () if text.strip().lower() in ("", "none") else method_list(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Time spyglass's attribution methods against Captum and against the forward floor, and "
            "measure their peak memory on few and many images, on the CPU with the default model."
        ),
    )
    parser.add_argument(
        "--methods",
        type=method_list,
        default=KNOWN_METHODS,
        help=f"comma-separated methods (default all: {','.join(KNOWN_METHODS)}; unregistered: skipped)",
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=None,
        help=f"photos per timed call (default {DEFAULT_IMAGES}, quick {QUICK_IMAGES}; 1 for "
        f"{' and '.join(ONE_IMAGE)}; at least one batch for the one-gradient methods)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"model evaluations per forward pass, spyglass and Captum alike (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help=f"timed calls per method; the median is reported (default {DEFAULT_REPEATS}, quick "
        f"{QUICK_REPEATS})",
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=DEFAULT_BUDGET,
        help=f"stop repeating a method once its timed calls took this long (default {DEFAULT_BUDGET:.0f} s)",
    )
    parser.add_argument(
        "--memory-methods",
        type=memory_method_list,
        default=None,
        help="comma-separated methods for the memory cases, or 'none' (default: saliency and occlusion, "
        "or RISE if occlusion is not registered)",
    )
    parser.add_argument(
        "--memory-images",
        type=lambda text: int_list(text, "image count"),
        default=None,
        help="image counts of the memory cases (default "
        f"{','.join(map(str, DEFAULT_MEMORY_IMAGES))}, quick {','.join(map(str, QUICK_MEMORY_IMAGES))})",
    )
    parser.add_argument(
        "--allocator",
        choices=SETTINGS,
        default="tuned",
        help="glibc allocator setting of the child processes (default tuned: "
        + " ".join(f"{k}={v}" for k, v in TUNED_ENV.items())
        + ")",
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
            f"smoke run: {QUICK_IMAGES} image, {QUICK_REPEATS} repeat, cheap settings for every method, "
            f"memory on {' and '.join(map(str, QUICK_MEMORY_IMAGES))} images (explicit options still win)"
        ),
    )
    # Internal: what a child process measures, and where it writes its JSON.
    parser.add_argument("--child", choices=("timing", "memory"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-method", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-count", type=positive_int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.images is None:
        args.images = QUICK_IMAGES if args.quick else DEFAULT_IMAGES
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if args.memory_images is None:
        args.memory_images = QUICK_MEMORY_IMAGES if args.quick else DEFAULT_MEMORY_IMAGES
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child_output is not None:
        result = measure_memory(args) if args.child == "memory" else measure_timing(args)
        args.child_output.write_text(json.dumps(result, indent=2))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
