"""``spyglass train lipschitz``: train a 1-Lipschitz CNN with hKR on a folder of class folders."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spyglass.cli._prelude import BatchSizeOption, ProgressOption, check_out_file, user_errors

if TYPE_CHECKING:
    from torch import Tensor

    from spyglass.models import VisionModel

__all__ = ["lipschitz", "read_class_folders"]

_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_class_folders(
    root: Path, model: VisionModel, limit: int | None = None
) -> tuple[Tensor, Tensor, list[str]]:
    """``(images, labels, class names)`` from ``root/<class>/<image>``, classes in sorted order."""
    import torch

    if not root.is_dir():
        raise ValueError(
            f"--data {root} is not a folder: give a folder with one sub-folder of images per class"
        )
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [
        [f for f in sorted(folder.iterdir()) if f.suffix.lower() in _SUFFIXES and f.is_file()]
        for folder in classes
    ]
    found = [(folder, images) for folder, images in zip(classes, files, strict=True) if images]
    if len(found) < 2:
        raise ValueError(
            f"--data {root} must hold at least two sub-folders of images, one per class; found "
            f"{len(found)} with images"
        )
    images, labels = [], []
    for label, (_, paths) in enumerate(found):
        for path in paths[:limit]:
            images.append(model.preprocess(path))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels), [folder.name for folder, _ in found]


def lipschitz(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", help="A folder with one sub-folder of images per class.", show_default=False
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The model file to write (for --model).")] = Path(
        "lipschitz.pt"
    ),
    size: Annotated[int, typer.Option("--size", min=4, help="Input size in pixels (square).")] = 32,
    widths: Annotated[
        str, typer.Option("--widths", help="Channels of each stage, comma-separated, even.")
    ] = "16,32",
    depth: Annotated[int, typer.Option("--depth", min=1, help="Convolutions per stage.")] = 2,
    head: Annotated[str, typer.Option("--head", help="spectral or frobenius.")] = "spectral",
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 10,
    lr: Annotated[float, typer.Option("--lr", help="Adam's learning rate.")] = 1e-3,
    alpha: Annotated[
        float | None,
        typer.Option("--alpha", help="torchlip's hinge/KR mix in [0, 1] (default 0.9); or give --lambda."),
    ] = None,
    lam: Annotated[
        float | None, typer.Option("--lambda", help="The paper's hinge weight λ (alpha = λ / (1 + λ)).")
    ] = None,
    margin: Annotated[float, typer.Option("--margin", help="The hinge margin.")] = 1.0,
    temperature: Annotated[
        float, typer.Option("--temperature", help="Softmax temperature of soft hKR.")
    ] = 1.0,
    validation: Annotated[
        float,
        typer.Option("--validation", min=0.0, max=0.9, help="Share of the images held out for accuracy."),
    ] = 0.2,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many images per class.")
    ] = None,
    batch_size: BatchSizeOption = 32,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, mps.")] = "cpu",
    progress: ProgressOption = True,
) -> None:
    """Train a 1-Lipschitz CNN (deel-torchlip layers) with the multiclass hKR loss.

    The model file works as `--model FILE` in every command.

    Example:

    \b
        spyglass train lipschitz --data photos/ --size 32 --epochs 20 --lambda 50 --out lip.pt
        spyglass explain --model lip.pt photos/cat/1.jpg
    """
    import torch
    from torch.utils.data import TensorDataset

    from spyglass import models
    from spyglass.alignment import (
        alpha_from_lambda,
        lipschitz_classifier,
        lipschitz_constant,
        train_lipschitz,
    )
    from spyglass.validation import check_device

    with user_errors():
        check_out_file(out, "model file", "lipschitz.pt")  # before any work
        if data is None:
            raise ValueError("--data is required: a folder with one sub-folder of images per class")
        if alpha is not None and lam is not None:
            raise ValueError("give --alpha or --lambda, not both (alpha = lambda / (1 + lambda))")
        mix = alpha_from_lambda(lam) if lam is not None else (0.9 if alpha is None else alpha)
        try:
            stage_widths = tuple(int(w) for w in widths.split(",") if w.strip())
        except ValueError:
            raise ValueError(f"--widths must be comma-separated ints such as 16,32; got {widths!r}") from None
        target = check_device(device)
        # Built once for its preprocessing; rebuilt with the class names once they are known.
        probe = lipschitz_classifier(2, input_size=(size, size), widths=stage_widths, depth=depth, head=head)
        images, labels, names = read_class_folders(data, probe, limit)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(labels), generator=generator)
        held = round(validation * len(labels))
        test, fit = order[:held], order[held:]
        torch.manual_seed(seed)
        model = lipschitz_classifier(
            len(names),
            input_size=(size, size),
            widths=stage_widths,
            depth=depth,
            head=head,
            class_names=names,
        ).to(target)

        def accuracy(network: torch.nn.Module, indices: Tensor) -> float:
            with torch.no_grad():
                batches = [
                    images[indices[i : i + batch_size]].to(target) for i in range(0, len(indices), batch_size)
                ]
                predicted = torch.cat([network(batch).argmax(1).cpu() for batch in batches])
            return float((predicted == labels[indices]).float().mean())

        validate = (lambda network: {"accuracy": accuracy(network, test)}) if held else None
        history = train_lipschitz(
            model,
            TensorDataset(images[fit], labels[fit]),
            epochs=epochs,
            lr=lr,
            alpha=mix,
            min_margin=margin,
            temperature=temperature,
            batch_size=batch_size,
            seed=seed,
            validate=validate,
            progress=progress,
        )
        estimate = lipschitz_constant(model, images[order[:8]].to(target), iterations=10, ascent_steps=0)
        scores = f"train accuracy {accuracy(model, fit):.3f}"
        if held:
            scores += f", held-out accuracy {accuracy(model, test):.3f}"
        written = models.save(model.cpu(), out)
    typer.echo(f"trained {history.steps} steps on {len(fit)} images of {len(names)} classes")
    typer.echo(f"final loss {history.losses[-1]:.4f}; {scores}")
    typer.echo(f"Lipschitz constant: ≥ {estimate.lower:.4f} (largest gradient norm found)")
    typer.echo(f"                    ≤ {estimate.upper:.4f} (product of the layers' bounds)")
    typer.echo(f"wrote {written}: use it as `--model {written}`")
