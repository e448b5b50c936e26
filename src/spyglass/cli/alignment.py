"""``spyglass alignment``: how well a model's explanations agree with human maps.

The alignment score of Fel et al. (NeurIPS 2022): per image Spearman between the
explanation and the human map, divided by the human ceiling 0.65753, with the Dice and IoU
of the top 10 % (:func:`spyglass.alignment.alignment_score`), on a
:class:`~spyglass.alignment.HumanMapFolder` whose class folders are WordNet ids.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import torch
import typer

from spyglass import attributions, models
from spyglass.alignment import HumanMapFolder, alignment_score, clickme_map_transform
from spyglass.cli._prelude import check_out, user_errors

__all__ = ["alignment", "register"]


def alignment(
    maps: Annotated[
        Path, typer.Option("--maps", help="Class folders (WordNet ids), maps beside the images.")
    ],
    model: Annotated[str, typer.Option("--model", help="A model name (see spyglass models).")] = (
        models.DEFAULT_MODEL
    ),
    weights: Annotated[
        Path | None, typer.Option("--weights", help="A state dict for a torchvision/timm model.")
    ] = None,
    method: Annotated[
        str, typer.Option("--method", "-M", help="The attribution method explained with.")
    ] = "saliency",
    clickme: Annotated[
        bool, typer.Option("--clickme", help="Blur the maps as the ClickMe loader does.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write alignment.json into.")] = None,
) -> None:
    """Score MODEL's explanations against the human maps in --maps (human feature alignment).

    Prints the alignment score (mean Spearman / 0.65753, as a percentage), the mean
    Spearman, Dice and IoU of the top 10 %, and how many images were left out because a
    map was constant. With --out, writes them and each image's Spearman to OUT/alignment.json.

    Example:

    \b
        spyglass alignment --maps maps/ --model resnet18 --weights harmonized.pt
    """
    with user_errors():
        if out is not None:
            check_out(out)
        net = models.load(model, weights=weights)
        size = net.input_size[0] if hasattr(net, "input_size") else 224
        dataset = HumanMapFolder(
            maps, size=size, map_transform=clickme_map_transform if clickme else None, labels="imagenet"
        )
        items = [dataset[i] for i in range(len(dataset))]
        images = torch.stack([item[0] for item in items])
        labels = torch.tensor([item[1] for item in items])
        heat = torch.stack([item[2] for item in items])
        explainer = attributions.create(method, net, batch_size=batch_size)
        result = alignment_score(net, images, labels, heat, explainer=lambda x, y: explainer(x, targets=y))
    typer.echo(f"{result.n_images} image(s), {model}, {method}")
    typer.echo(f"human feature alignment: {result.percent:.1f} %  (Spearman {result.spearman:.4f} / 0.65753)")
    typer.echo(
        f"top-10 % Dice {result.dice:.4f}, IoU {result.iou:.4f}; constant maps left out: {result.n_constant}"
    )
    if out is not None:
        report = {
            "model": model,
            "method": method,
            "score": result.score,
            "spearman": result.spearman,
            "dice": result.dice,
            "iou": result.iou,
            "n_images": result.n_images,
            "n_constant": result.n_constant,
            "per_image": {
                str(path): (None if math.isnan(rho) else float(rho))
                for (path, _, _), rho in zip(dataset.items, result.per_image, strict=True)
            },
        }
        with user_errors(OSError):
            out.mkdir(parents=True, exist_ok=True)
            (out / "alignment.json").write_text(json.dumps(report, indent=2))
            typer.echo(f"wrote {out / 'alignment.json'}")


def register(app: typer.Typer) -> None:
    """Add ``alignment`` to ``app``."""
    app.command()(alignment)
