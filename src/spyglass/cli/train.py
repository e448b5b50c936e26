"""``spyglass train …``: train models whose explanations are better (harmonization, 1-Lipschitz).

``spyglass train harmonize --data DIR --model resnet18 --out harmonized.pt`` fine-tunes a
torchvision or timm ImageNet classifier with the harmonization loss on a
:class:`~spyglass.alignment.HumanMapFolder` whose class folders are WordNet ids, and
writes the network's state dict, which ``models.load(NAME, weights=FILE)`` reads back
(the other commands' ``--model`` does not take a weights file yet).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from spyglass import models
from spyglass.alignment import HumanMapFolder, clickme_map_transform, harmonize
from spyglass.cli._prelude import check_out_file, user_errors
from spyglass.cli.lipschitz import lipschitz

__all__ = ["app"]

app = typer.Typer(
    help="Train models whose explanations are better (harmonization, 1-Lipschitz).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.command("lipschitz")(lipschitz)


@app.command("harmonize")
def harmonize_command(
    data: Annotated[
        Path, typer.Option("--data", help="Class folders (WordNet ids), maps beside the images.")
    ],
    model: Annotated[str, typer.Option("--model", help="A torchvision or timm/<name> model to fine-tune.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the trained state dict.")],
    weights: Annotated[Path | None, typer.Option("--weights", help="Start from this state dict.")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 1,
    size: Annotated[int, typer.Option("--size", min=8, help="Side images and maps are resized to.")] = 224,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 1e-4,
    strength: Annotated[
        float, typer.Option("--strength", min=0.0, help="λ of the map term (0: none).")
    ] = 1.0,
    clickme: Annotated[
        bool, typer.Option("--clickme", help="Blur the maps as the ClickMe loader does.")
    ] = False,
    missing_maps: Annotated[
        bool, typer.Option("--allow-missing-maps", help="Train on images without a map (token 0).")
    ] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Resumable checkpoint file.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint.")] = False,
    device: Annotated[str, typer.Option("--device")] = "cpu",
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Fine-tune MODEL with the harmonization loss (Fel et al., NeurIPS 2022) on DATA.

    DATA holds one folder per class, named by its WordNet id, with each image's human map
    beside it (img.jpg with img.npy or img.map.png). Writes the network's state dict to
    OUT, which spyglass.models.load(MODEL, weights=OUT) loads.

    Example:

    \b
        spyglass train harmonize --data maps/ --model resnet18 --epochs 5 --out harmonized.pt
    """
    with user_errors():
        check_out_file(out, "weights file", "harmonized.pt")  # before any work
        dataset = HumanMapFolder(
            data,
            size=size,
            map_transform=clickme_map_transform if clickme else None,
            missing="token" if missing_maps else "error",
            labels="imagenet",
        )
        net = models.load(model, device=device, weights=weights)
        history = harmonize(
            net,
            dataset,
            epochs,
            lr=lr,
            strength=strength,
            batch_size=batch_size,
            seed=seed,
            checkpoint=checkpoint,
            resume=resume,
            progress=progress,
        )
    with user_errors(OSError):
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.network.state_dict(), out)
    last = history.losses[-1] if history.losses else float("nan")
    typer.echo(f"trained {history.steps} steps, last loss {last:.4g}; weights written to {out}")
