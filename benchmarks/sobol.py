"""Sobol' indices before and after the matched pick-freeze design: analytic cases and real photos.

What it measures
    1. **Analytic functions with known total indices**, Jansen's estimator, ``--seeds``
       seeds (10) at ``N`` = 32, 64 and 128, for the design of each ``pairing`` of
       :func:`spyglass.sampling.sensitivity_design`: ``"halves"`` (before: ``b_i`` is column
       ``d + i`` of one ``2d``-dimensional scrambled Sobol' sample) and ``"matched"`` (after:
       the same columns re-paired with ``A``'s by measured correlation).

       - Ishigami (``a = 7``, ``b = 0.1``, ``d = 3``);
       - linear additive ``y = Σ wᵢxᵢ`` (indices ``wᵢ²/Σw²``) at ``d`` = 10, 20 and 121, with
         spread weights (``w`` evenly from 1 to 10), and with one dominant input
         (``w_k = 1``, every other 0.01) swept over every position ``k``;
       - Sobol's g-function at ``d = 121``, ``a_i = (i − 1)/2``.

       Reported per case: the mean absolute error over inputs and seeds (over positions
       too for a sweep); for a sweep the worst position's reading of the dominant input
       (the smallest mean over seeds, and the smallest single reading); the worst cell's
       bias averaged over seeds (``max_i |mean_seeds(Ŝ_i − S_i)|``; for a sweep, of the
       dominant reading); the mean sum of the indices (true sum in the header); and the
       design's largest ``|r(a_i, b_i)|`` over the seeds.
    2. **Real photos** (``--photos`` of ``../shared/data/imagenet-samples``, spread over its
       classes, each explained for the default model's top-1 class): the Spearman
       correlation between the Sobol' maps of two seeds (0 and 1) of the same photo, at the
       defaults (grid 11, ``nb_design`` 32), for each pairing, and the forward passes each
       map costs. ``--photos 0`` skips it (it is the slow part: 3,936 forward passes per map).

Neither part depends on the machine's load (no timing); only the second is slow.

Run ``python benchmarks/sobol.py --help`` for the options; ``--photos 0`` gives the table in
a few seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, RESULTS, load_average, log, machine_info, require_spyglass

PHOTOS = REPO_ROOT.parent / "shared" / "data" / "imagenet-samples"
PAIRINGS = ("halves", "matched")
CASES = ("ishigami", "linear10", "linear20", "linear121", "sweep10", "sweep20", "sweep121", "g121")
DESIGN_SIZES = (32, 64, 128)


# ------------------------------------------------------------------------ the analytic functions


def ishigami(x: Any, a: float = 7.0, b: float = 0.1) -> Any:
    x = (2.0 * x - 1.0) * math.pi
    return x[:, 0].sin() + a * x[:, 1].sin().square() + b * x[:, 2].pow(4) * x[:, 0].sin()


def ishigami_truth(a: float = 7.0, b: float = 0.1) -> Any:
    import torch

    v1 = 0.5 * (1.0 + b * math.pi**4 / 5.0) ** 2
    v2 = a**2 / 8.0
    v13 = b**2 * math.pi**8 * (1.0 / 18.0 - 1.0 / 50.0)
    v = v1 + v2 + v13
    return torch.tensor([[(v1 + v13) / v, v2 / v, v13 / v]], dtype=torch.float64)


def g_coefficients(nb_dims: int) -> Any:
    import torch

    return torch.arange(nb_dims, dtype=torch.float64) / 2.0


def g_function(x: Any, coefficients: Any) -> Any:
    return ((4.0 * x - 2.0).abs().add(coefficients).div(1.0 + coefficients)).prod(dim=1)


def g_truth(coefficients: Any) -> Any:
    partial = 1.0 / (3.0 * (1.0 + coefficients) ** 2)
    total = (1.0 + partial).prod()
    return (partial * total / (1.0 + partial) / (total - 1.0))[None]


def linear_weights(case: str, nb_dims: int) -> Any:
    """``(K, d)``: one weight vector (spread) or ``d`` of them (the dominant input swept)."""
    import torch

    if case.startswith("sweep"):
        weights = torch.full((nb_dims, nb_dims), 0.01, dtype=torch.float64)
        return weights.fill_diagonal_(1.0)
    return torch.linspace(1.0, 10.0, nb_dims, dtype=torch.float64)[None]


def case_dims(case: str) -> int:
    return 3 if case == "ishigami" else int(case.lstrip("linearswpg"))


def estimate(case: str, nb_design: int, seed: int, pairing: str) -> tuple[Any, Any, float]:
    """Estimated and true indices ``(K, d)`` of one case (K functions), and the design's max |r|."""
    import torch

    from spyglass.sampling import sensitivity_design, total_order_indices

    nb_dims = case_dims(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the halves warn about themselves: that is the point
        design, report = sensitivity_design(nb_dims, nb_design, seed=seed, pairing=pairing, report=True)
    x = design.double()
    if case == "ishigami":
        scores, truth = ishigami(x)[:, None], ishigami_truth()
    elif case.startswith("g"):
        coefficients = g_coefficients(nb_dims)
        scores, truth = g_function(x, coefficients)[:, None], g_truth(coefficients)
    else:
        weights = linear_weights(case, nb_dims)
        scores = x @ weights.T
        truth = weights.square() / weights.square().sum(dim=1, keepdim=True)
    indices = torch.stack(
        [total_order_indices(scores[:, k], nb_dims, nb_design).double() for k in range(scores.shape[1])]
    )
    return indices, truth, report.max_correlation


def analytic_row(case: str, nb_design: int, pairing: str, seeds: int) -> dict[str, Any]:
    import torch

    runs = [estimate(case, nb_design, seed, pairing) for seed in range(seeds)]
    indices = torch.stack([r[0] for r in runs])  # (seeds, K, d)
    truth = runs[0][1]
    error = indices - truth
    row: dict[str, Any] = {
        "case": case,
        "nb_design": nb_design,
        "pairing": pairing,
        "mean_abs_error": float(error.abs().mean()),
        "worst_bias": float(error.mean(dim=0).abs().max()),
        "sum": float(indices.sum(dim=2).mean()),
        "true_sum": float(truth.sum(dim=1).mean()),
        "max_abs_r": max(r[2] for r in runs),
    }
    if case.startswith("sweep"):
        dominant = torch.diagonal(indices, dim1=1, dim2=2)  # (seeds, d): x_k's reading at k
        row["worst_position_mean"] = float(dominant.mean(dim=0).min())
        row["worst_position_any_seed"] = float(dominant.min())
        row["worst_position"] = int(dominant.mean(dim=0).argmin())
        row["true_dominant"] = float(torch.diagonal(truth).min())
        row["worst_bias"] = float((dominant - torch.diagonal(truth)).mean(dim=0).abs().max())
    return row


def analytic(seeds: int, cases: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for nb_design in DESIGN_SIZES:
        for case in cases:
            for pairing in PAIRINGS:
                rows.append(analytic_row(case, nb_design, pairing, seeds))
            log(f"N={nb_design} {case}: done")
    return rows


# ----------------------------------------------------------------------------- real photos


def spearman(x: Any, y: Any) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x.flatten().numpy(), y.flatten().numpy()).statistic)


def photos_part(count: int, folder: Path, batch_size: int) -> dict[str, Any]:
    import torch

    from spyglass import attributions, data, models

    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no photos in {folder}: give --photo-folder")
    step = max(1, len(files) // count)
    chosen = files[::step][:count]
    model = models.load()
    photos = data.read_images(chosen, model.preprocess, progress=False).images
    with torch.no_grad():
        targets = model(photos).argmax(dim=1)
    result: dict[str, Any] = {"photos": [p.name for p in chosen], "targets": targets.tolist()}
    for pairing in PAIRINGS:
        maps = []
        for seed in (0, 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                method = attributions.SobolAttribution(
                    model, seed=seed, pairing=pairing, batch_size=batch_size, progress=False
                )
            maps.append(method(photos, targets))
            log(f"photos: {pairing}, seed {seed} done")
        grid = method.grid_size
        rho = [spearman(maps[0][i], maps[1][i]) for i in range(len(photos))]
        result[pairing] = {
            "spearman_per_photo": rho,
            "spearman_mean": sum(rho) / len(rho),
            "forwards_per_map": method.nb_design * (grid**2 + 2),
            "max_abs_r": method.design_report.max_correlation,
        }
    return result


# ---------------------------------------------------------------------------------- report


def report(result: dict[str, Any]) -> str:
    rows = {(r["case"], r["nb_design"], r["pairing"]): r for r in result["analytic"]}
    lines = [
        f"Total Sobol' indices, Jansen, {result['seeds']} seeds; before = pairing 'halves', "
        "after = 'matched' (before → after)",
        "",
        "| case | N | mean abs. error | worst position (mean / any seed) | worst-cell bias | "
        "sum of indices (true) | max abs(r) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for nb_design in DESIGN_SIZES:
        for case in result["cases"]:
            old, new = rows[(case, nb_design, "halves")], rows[(case, nb_design, "matched")]
            worst = "–"
            if "worst_position_mean" in old:
                worst = (
                    f"{old['worst_position_mean']:.2f} / {old['worst_position_any_seed']:.2f} → "
                    f"{new['worst_position_mean']:.2f} / {new['worst_position_any_seed']:.2f} "
                    f"(true {new['true_dominant']:.3f})"
                )
            lines.append(
                f"| {case} | {nb_design} | {old['mean_abs_error']:.4f} → {new['mean_abs_error']:.4f} | "
                f"{worst} | {old['worst_bias']:.3f} → {new['worst_bias']:.3f} | "
                f"{old['sum']:.2f} → {new['sum']:.2f} ({new['true_sum']:.2f}) | "
                f"{old['max_abs_r']:.2f} → {new['max_abs_r']:.2f} |"
            )
    photos = result.get("photos")
    if photos:
        lines += [
            "",
            f"Seed-to-seed Spearman of Sobol' maps (seeds 0 and 1, grid 11, nb_design 32) on "
            f"{len(photos['photos'])} photos",
            "",
            "| pairing | mean Spearman | per photo | forward passes per map | max abs(r) |",
            "|---|---:|---|---:|---:|",
        ]
        for pairing in PAIRINGS:
            p = photos[pairing]
            per_photo = ", ".join(f"{v:.2f}" for v in p["spearman_per_photo"])
            lines.append(
                f"| {pairing} | {p['spearman_mean']:.3f} | {per_photo} | {p['forwards_per_map']} | "
                f"{p['max_abs_r']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="Seeds per analytic case (10).")
    parser.add_argument("--cases", default=",".join(CASES), help="Comma-separated analytic cases.")
    parser.add_argument("--photos", type=int, default=8, help="Photos for the Spearman part (0: skip).")
    parser.add_argument("--photo-folder", type=Path, default=PHOTOS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", type=Path, default=RESULTS / "sobol.json")
    args = parser.parse_args(argv)
    cases = tuple(c for c in args.cases.split(",") if c)
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    require_spyglass()
    import torch

    load_before = load_average()
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seeds": args.seeds,
        "cases": list(cases),
        "analytic": analytic(args.seeds, cases),
    }
    if args.photos > 0:
        result["photos"] = photos_part(args.photos, args.photo_folder, args.batch_size)
    result["machine"] = machine_info(torch.__version__, torch.get_num_threads(), load_before, load_average())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(report(result))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    sys.exit(main())
