"""CRAFT on one class of real photos: seconds, the share that is the model's forward passes, a peer.

What it measures
    On the default model (``spyglass.models.load()``, EfficientNet-Lite0), on the CPU, on
    the photos of one Imagenette class (tench by default, 387 photos):

    1. **Craft.fit** (crops → ``g`` → NMF) and **Craft.importance** (Sobol' at
       ``--nb-design``, and Gradient×Input), in seconds.
    2. **The floor**: the model's own forward passes over the same inputs, at the same
       batch size, timed in the same process (the whole model on every resized crop for
       the fit; on every photo for the importance). ``share = floor / time`` says how much
       of each step is the network itself; the rest is cropping, resizing, the
       factorisation, the coding and the evaluations of ``h``.
    3. **The factorisation against a peer.** ``overcomplete`` (Fel et al.'s own PyTorch
       dictionary-learning toolbox) where it installs: its ``NMF`` fit (HALS, NNDSVDa
       initialisation, ``max_iter=500``, ``tol=1e-4``) against spyglass's ``NMF`` fit
       (scikit-learn's coordinate descent, NNDSVDa, the same ``max_iter`` and ``tol``) on
       the very crop activations of step 1, and the coding of every spatial position of
       the photos with spyglass's dictionary fixed in both (overcomplete's ``encode``
       against spyglass's exact NNLS ``transform``). Time ratio spyglass / overcomplete (target <= 1.0) and
       the relative reconstruction error of each, since a faster, worse fit is no win.
       xplique's ``CraftTorch`` needs TensorFlow, which is not installable here; it is
       not compared.
    4. **CRAFT against the authors' package** (``craft-xai``, its ``craft.craft_torch.Craft``)
       on the same photos, the same split ``f = h ∘ g`` (spyglass's, at the same layer) and
       the defaults of both (10 concepts, 64 px crops at the paper's stride
       ``int(0.8 · 64) = 51``, Sobol' importance at ``nb_design`` 32): the concepts matched
       one to one by cosine (Hungarian, :func:`spyglass.concepts.match_concepts`), the
       relative reconstruction error of each on the crops' activations, the Spearman
       correlation of the two importance vectors, and the time ratios spyglass / craft-xai of
       the fit and of the importance. The two need not give the same importance values:
       craft-xai codes with scikit-learn's iterative NMF ``transform`` and masks the
       reconstruction ``U W`` (residual dropped) on an unscrambled Halton design, spyglass
       codes by exact NNLS and keeps the residual, on its matched Sobol' design; the
       ranking is what should agree. spyglass's side is step 1's fit and Sobol' importance
       (same settings), not run twice. ``--stride 64`` runs spyglass with non-overlapping
       crops (its default before issue 12) for comparison.

    overcomplete 0.3.0 calls ``matplotlib.cm.get_cmap``, removed in matplotlib 3.9, at
    import; the benchmark aliases it to ``matplotlib.colormaps.get_cmap`` before importing
    it (a peer's packaging defect, nothing to do with what is timed). craft-xai 0.0.3 imports
    TensorFlow at the top of ``craft/sobol/sampler.py`` for a sampler its PyTorch class never
    uses; without TensorFlow the benchmark puts an empty module under that name before
    importing it (the same kind of defect).

Allocator
    Run it under the tuned glibc allocator (``make benchmark`` exports it; see forward.py
    and DESIGN.md); the JSON records whether it was.

Run ``python benchmarks/concepts.py --help`` for the options; ``--limit 16`` is a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_DATA,
    RESULTS,
    TUNED_ENV,
    load_average,
    log,
    machine_info,
    positive_int,
    require_spyglass,
    warn_if_busy,
)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def import_overcomplete() -> Any:
    try:
        import matplotlib
        import matplotlib.cm

        if not hasattr(matplotlib.cm, "get_cmap"):  # see the module docstring
            matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap  # type: ignore[attr-defined]
        from overcomplete.optimization import NMF as OvercompleteNMF
    except ImportError:
        return None
    return OvercompleteNMF


def import_craft_xai() -> Any:
    """``craft.craft_torch.Craft`` of the authors' package, or None where it is not installed."""
    import importlib.util
    import types

    if importlib.util.find_spec("craft") is None:
        return None
    if importlib.util.find_spec("tensorflow") is None:  # see the module docstring
        sys.modules.setdefault("tensorflow", types.ModuleType("tensorflow"))
    try:
        from craft.craft_torch import Craft as CraftXai
    except ImportError:
        return None
    return CraftXai


def compare_craft_xai(
    model: Any,
    photos: Any,
    args: argparse.Namespace,
    ours: Any,
    our_fit_s: float,
    our_importance_s: float,
    our_importance: Any,
) -> dict[str, Any] | None:
    """spyglass's Craft against craft-xai's on the same photos and split (item 4 of the docstring).

    ``ours`` is step 1's fitted Craft, its fit and Sobol' importance timed there: the same
    settings as the peer's, so they are not run twice.
    """
    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from spyglass.concepts import match_concepts
    from spyglass.models.split import split

    craft_xai = import_craft_xai()
    if craft_xai is None:
        log("craft-xai not installed: no comparison with the authors' CRAFT")
        return None
    bottom, top = split(model, ours.layer)
    theirs = craft_xai(
        input_to_latent=bottom,
        latent_to_logit=top,
        number_of_concepts=args.n_concepts,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        device="cpu",
    )
    their_fit_s, (their_crops, their_u, their_w) = timed(lambda: theirs.fit(photos))
    their_importance_s, their_importance = timed(
        lambda: theirs.estimate_importance(photos, args.class_id, nb_design=args.nb_design)
    )
    their_w = torch.as_tensor(np.asarray(their_w), dtype=torch.float64)
    their_u = torch.as_tensor(np.asarray(their_u), dtype=torch.float64)
    match = match_concepts(ours.components_.double(), their_w)
    same_crops = tuple(their_crops.shape) == tuple(ours.crops_.shape) and bool(
        torch.equal(their_crops, ours.crops_)
    )
    # Both factorise the crops' spatially averaged activations; with the same crops those are
    # spyglass's crop_activations_, so both errors are measured on them.
    activations = ours.crop_activations_.double()
    their_error = relative_error(activations, their_u, their_w) if same_crops else None
    rho = float(spearmanr(our_importance.numpy(), np.asarray(their_importance)).statistic)
    log(
        f"craft-xai: fit {their_fit_s:.1f} s (spyglass {our_fit_s:.1f} s), importance "
        f"{their_importance_s:.1f} s (spyglass {our_importance_s:.1f} s), Spearman {rho:.3f}"
    )
    return {
        "package": "craft-xai",
        "stride": ours.stride,
        "crops": int(ours.crops_.shape[0]),
        "peer_crops": int(their_crops.shape[0]),
        "same_crops": same_crops,
        "matched_cosines": match.cosines.tolist(),
        "reconstruction_error": ours.reconstruction_error_,
        "peer_reconstruction_error": their_error,
        "importance": our_importance.tolist(),
        "peer_importance": np.asarray(their_importance, dtype=float).tolist(),
        "importance_spearman": rho,
        "fit_s": our_fit_s,
        "peer_fit_s": their_fit_s,
        "importance_s": our_importance_s,
        "peer_importance_s": their_importance_s,
    }


def relative_error(activations: Any, codes: Any, components: Any) -> float:
    import torch

    return float(
        torch.linalg.matrix_norm(activations - codes @ components) / torch.linalg.matrix_norm(activations)
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from spyglass import data, models
    from spyglass.concepts import Craft, create_learner
    from spyglass.concepts._crops import CropSource, crop_grid
    from spyglass.concepts.craft import _feature_maps, _rows
    from spyglass.engines import batched_forward
    from spyglass.models.split import split

    torch.set_num_threads(args.threads)
    load_before = warn_if_busy()
    model = models.load()
    folder = args.data / args.class_folder
    if not folder.is_dir():
        raise SystemExit(f"no photos at {folder}: give --data (an Imagenette tree) and --class-folder")
    photos = data.read_images(folder, model.preprocess, limit=args.limit, progress=False).images
    log(f"{len(photos)} photos of {args.class_folder} (class {args.class_id})")
    with torch.no_grad():
        model(photos[: args.batch_size])  # warm-up
    settings = {"n_concepts": args.n_concepts, "patch_size": args.patch_size, "batch_size": args.batch_size}
    craft = Craft(model, **settings, stride=args.stride, progress=False, seed=0)

    fit_s, _ = timed(lambda: craft.fit(photos, args.class_id))
    log(f"fit: {fit_s:.1f} s ({craft.crops_.shape[0]} crops)")
    sobol_s, sobol = timed(lambda: craft.importance(photos, "sobol", nb_design=args.nb_design))
    log(f"importance (sobol, nb_design={args.nb_design}): {sobol_s:.1f} s")
    gi_s, gradient_input = timed(lambda: craft.importance(photos, "gradient_input"))
    log(f"importance (gradient_input): {gi_s:.1f} s")

    # The floor: the whole model over the same inputs, at the same batch size.
    boxes = crop_grid(len(photos), photos.shape[2], photos.shape[3], args.patch_size, craft.stride)
    crops = CropSource(photos, boxes, args.patch_size, model.input_size)
    floor_fit_s, _ = timed(lambda: batched_forward(model, crops, batch_size=args.batch_size, progress=False))
    floor_image_s, _ = timed(
        lambda: batched_forward(model, photos, batch_size=args.batch_size, progress=False)
    )
    log(f"floor: {floor_fit_s:.1f} s on the crops, {floor_image_s:.1f} s on the photos")

    # The factorisation alone, and the coding of every position, against overcomplete.
    activations = craft.crop_activations_
    ours = create_learner("nmf", args.n_concepts, seed=0)
    ours_fit_s, _ = timed(lambda: ours.fit(activations))
    ours_error = relative_error(activations, ours.transform(activations), ours.components_)
    bottom, _ = split(model, craft.layer, check=False)
    with torch.no_grad():
        positions = torch.cat(
            [
                _rows(_feature_maps(bottom(photos[i : i + args.batch_size]), craft.layer))
                for i in range(0, len(photos), args.batch_size)
            ]
        )
    ours_code_s, ours_codes = timed(lambda: ours.transform(positions))
    ours_code_error = relative_error(positions, ours_codes, ours.components_)
    peer: dict[str, Any] | None = None
    overcomplete_nmf = None if args.skip_peer else import_overcomplete()
    if overcomplete_nmf is None:
        log("overcomplete not installed (or --skip-peer): no peer comparison")
    else:
        theirs = overcomplete_nmf(nb_concepts=args.n_concepts, solver="hals", tol=1e-4)
        their_fit_s, (their_codes, their_components) = timed(lambda: theirs.fit(activations, max_iter=500))
        # The coding is compared with the same dictionary, spyglass's: then the exact NNLS
        # code has the smallest error there is, and the error column says how close theirs is.
        theirs.D = ours.components_.clone()
        their_code_s, their_position_codes = timed(lambda: theirs.encode(positions))
        peer = {
            "package": "overcomplete",
            "fit_s": their_fit_s,
            "fit_relative_error": relative_error(activations, their_codes, their_components),
            "code_s": their_code_s,
            "code_relative_error": relative_error(positions, their_position_codes, ours.components_),
        }
        log(f"overcomplete: fit {their_fit_s:.2f} s, code {their_code_s:.2f} s")
    authors = None if args.skip_peer else compare_craft_xai(model, photos, args, craft, fit_s, sobol_s, sobol)
    load_after = load_average()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(torch.__version__, args.threads, load_before, load_after),
        "allocator_tuned": all(os.environ.get(k) == v for k, v in TUNED_ENV.items()),
        "photos": len(photos),
        "class_folder": args.class_folder,
        "class_id": args.class_id,
        "settings": {**settings, "nb_design": args.nb_design, "layer": craft.layer, "stride": craft.stride},
        "crops": int(craft.crops_.shape[0]),
        "positions": int(positions.shape[0]),
        "fit_s": fit_s,
        "importance_sobol_s": sobol_s,
        "importance_gradient_input_s": gi_s,
        "floor_fit_s": floor_fit_s,
        "floor_importance_s": floor_image_s,
        "reconstruction_error": craft.reconstruction_error_,
        "sobol": sobol.tolist(),
        "gradient_input": gradient_input.tolist(),
        "spyglass_nmf": {
            "fit_s": ours_fit_s,
            "fit_relative_error": ours_error,
            "code_s": ours_code_s,
            "code_relative_error": ours_code_error,
        },
        "peer": peer,
        "craft_xai": authors,
    }


def report(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        f"CRAFT on {result['photos']} photos of {result['class_folder']} (class {result['class_id']}), "
        f"layer {s['layer']}, {s['n_concepts']} concepts, {s['patch_size']} px crops "
        f"({result['crops']} crops), batch {s['batch_size']}, {result['machine']['threads']} threads, "
        f"allocator {'tuned' if result['allocator_tuned'] else 'default'}",
        "",
        "| step | seconds | model forward floor (s) | floor / time |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds, floor in (
        ("Craft.fit", result["fit_s"], result["floor_fit_s"]),
        (
            f"importance, Sobol (nb_design {s['nb_design']})",
            result["importance_sobol_s"],
            result["floor_importance_s"],
        ),
        ("importance, Gradient×Input", result["importance_gradient_input_s"], result["floor_importance_s"]),
    ):
        lines.append(f"| {label} | {seconds:.1f} | {floor:.1f} | {floor / seconds:.2f} |")
    ours, peer = result["spyglass_nmf"], result["peer"]
    lines += [
        "",
        "| factorisation step | spyglass (s) | overcomplete (s) | ratio | rel. error, spyglass / peer |",
    ]
    lines.append("|---|---:|---:|---:|---:|")
    for label, key, error in (
        (f"NMF fit ({result['crops']} crops)", "fit_s", "fit_relative_error"),
        (f"coding ({result['positions']} positions)", "code_s", "code_relative_error"),
    ):
        if peer is None:
            lines.append(f"| {label} | {ours[key]:.2f} | – | – | {ours[error]:.4f} / – |")
        else:
            lines.append(
                f"| {label} | {ours[key]:.2f} | {peer[key]:.2f} | {ours[key] / peer[key]:.2f} | "
                f"{ours[error]:.4f} / {peer[error]:.4f} |"
            )
    authors = result.get("craft_xai")
    if authors is not None:
        cosines = authors["matched_cosines"]
        their_error = authors["peer_reconstruction_error"]
        lines += [
            "",
            f"Against craft-xai's craft_torch.Craft (the authors' code), same photos and split, stride "
            f"{authors['stride']}: {authors['crops']} crops (craft-xai {authors['peer_crops']}, identical: "
            f"{authors['same_crops']})",
            "",
            "| matched cosines (min / mean) | reconstruction error, spyglass / craft-xai | "
            "importance Spearman | fit time ratio | importance time ratio |",
            "|---:|---:|---:|---:|---:|",
            f"| {min(cosines):.5f} / {sum(cosines) / len(cosines):.5f} | "
            f"{authors['reconstruction_error']:.5f} / "
            f"{'–' if their_error is None else f'{their_error:.5f}'} | "
            f"{authors['importance_spearman']:.3f} | {authors['fit_s'] / authors['peer_fit_s']:.2f} | "
            f"{authors['importance_s'] / authors['peer_importance_s']:.2f} |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="An Imagenette tree.")
    parser.add_argument("--class-folder", default="n01440764", help="The class's folder (default tench).")
    parser.add_argument("--class-id", type=int, default=0, help="Its ImageNet index.")
    parser.add_argument("--limit", type=positive_int, default=None, help="At most this many photos.")
    parser.add_argument("--n-concepts", type=positive_int, default=10)
    parser.add_argument("--patch-size", type=positive_int, default=64)
    parser.add_argument("--nb-design", type=positive_int, default=32)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--stride", type=positive_int, default=None, help="Crop stride (default Craft's, 0.8 * patch)."
    )
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--skip-peer", action="store_true", help="Do not compare with overcomplete and craft-xai."
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "concepts.json")
    args = parser.parse_args(argv)
    require_spyglass()
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(report(result))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
