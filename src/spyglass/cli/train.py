"""``spyglass train …``: train models whose explanations are better (harmonization, 1-Lipschitz).

``spyglass train harmonize --data DIR --model resnet18 --out harmonized.pt`` fine-tunes a
zoo ImageNet classifier (EfficientNet-Lite, torchvision, timm, or a model file) with the
harmonization loss on a :class:`~spyglass.alignment.HumanMapFolder` whose class folders are
WordNet ids, and writes a model file (:func:`spyglass.models.save`: the architecture's name,
its preprocessing and the trained weights), which ``models.load(FILE)`` and every command's
``--model FILE`` read back without downloading anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    model: Annotated[
        str,
        typer.Option("--model", help="A zoo model (torchvision, timm/<name>, efficientnet_lite0) or file."),
    ],
    out: Annotated[Path, typer.Option("--out", help="The model file to write (for --model).")],
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
    beside it (img.jpg with img.npy or img.map.png). Writes a model file to OUT, which
    every command takes as --model OUT (and spyglass.models.load(OUT) loads).

    Example:

    \b
        spyglass train harmonize --data maps/ --model resnet18 --epochs 5 --out harmonized.pt
        spyglass explain --model harmonized.pt maps/n01440764/1.jpg
    """
    with user_errors():
        check_out_file(out, "model file", "harmonized.pt")  # before any work
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
    with user_errors(OSError, ValueError):
        check_out_file(out, "model file", "harmonized.pt")  # again: one may have appeared meanwhile
        out.parent.mkdir(parents=True, exist_ok=True)
        written = models.save(net, out)
    last = history.losses[-1] if history.losses else float("nan")
    typer.echo(f"trained {history.steps} steps, last loss {last:.4g}")
    typer.echo(f"wrote {written}: use it as `--model {written}`")
