"""Images with human feature maps on disk, and harmonization training on them.

Folder format (one level of class folders, ImageFolder style; classes numbered 0, 1, …
in the sorted order of the folder names)::

    DIR/
      cat/
        0001.jpg        an image (.jpg, .jpeg, .png, .bmp, .webp)
        0001.npy        its human map: a 2-D non-negative float array, any size
        0002.jpg
        0002.map.png    …or a greyscale PNG (0 to 255), any size
      dog/
        …

A map sits beside its image under the same stem, as ``<stem>.npy`` or ``<stem>.map.png``
(a file named ``*.map.png`` is never taken for an image). ClickMe maps saved this way can be
given the authors' blur with ``map_transform=clickme_map_transform``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import Dataset

from spyglass.alignment.harmonization import alignment_score, harmonization_loss
from spyglass.data.imagenet import wnid_to_index
from spyglass.training.loop import TrainingHistory, train
from spyglass.validation import check_int

__all__ = ["HumanMapFolder", "clickme_map_transform", "harmonize"]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _gaussian_window(size: int, sigma: float) -> Tensor:
    # Even size 10, as the authors': taps at x = -5 … 4.
    x = torch.arange(size, dtype=torch.float64) - size // 2
    window = torch.exp(-(x**2) / (2 * sigma**2))
    return window / window.sum()


def clickme_map_transform(heat_map: Tensor, size: int, *, blur_at: int = 64, sigma: float = 10.0) -> Tensor:
    """The authors' ClickMe map preprocessing: bilinear to 64 px, Gaussian blur σ = 10, bilinear to ``size``.

    The blur follows the reference loader: a 10×10 Gaussian window (σ = 10, normalised to
    sum 1) applied with TensorFlow's "SAME" zero padding (4 before, 5 after). An even window
    has no centre tap, so the blurred map is shifted by up to a pixel at 64 px.

    Examples
    --------
    >>> import torch
    >>> clickme_map_transform(torch.rand(256, 256), 32).shape
    torch.Size([32, 32])
    """
    x = heat_map.to(torch.float64)[None, None]
    x = F.interpolate(x, size=(blur_at, blur_at), mode="bilinear", align_corners=False)
    window = _gaussian_window(10, sigma)
    kernel = torch.outer(window, window)[None, None]
    x = F.conv2d(F.pad(x, (4, 5, 4, 5)), kernel)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x[0, 0].clamp_min(0).float()


def _read_map(path: Path) -> Tensor:
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    else:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array.squeeze()
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"the human map {path} must be a 2-D numeric array; got shape {array.shape}")
    tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if not bool(torch.isfinite(tensor).all()) or float(tensor.min()) < 0:
        raise ValueError(f"the human map {path} must hold finite values >= 0")
    return tensor


class HumanMapFolder(Dataset[tuple[Tensor, int, Tensor, Tensor]]):
    """Images in class folders, each with its human map beside it (see the module docstring).

    Items are ``(image (3, size, size) in [0, 1], label, map (size, size), token)``; the
    token is 1 for an image with a map and 0 for one without (only with
    ``missing="token"``; its map is zeros), as the harmonization loss expects.

    Parameters
    ----------
    root
        The folder.
    size
        Side the images and maps are resized to (bilinear; images are squashed, not cropped).
    map_transform
        ``map_transform(map, size) -> (size, size)``; default a bilinear resize.
        :func:`clickme_map_transform` is the authors' ClickMe preprocessing.
    missing
        ``"error"`` (default): every image must have a map; ``"token"``: images without one
        get token 0.
    labels
        ``"index"`` (default): the classes are numbered 0, 1, … in sorted folder order;
        ``"imagenet"``: the folders are WordNet ids (``n01440764``) and the labels their
        ImageNet-1k indices, to fine-tune an ImageNet classifier.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp()); (root / "a").mkdir()
    >>> Image.new("RGB", (20, 20)).save(root / "a" / "x.png"); np.save(root / "a" / "x.npy", np.ones((5, 5)))
    >>> image, label, heat, token = HumanMapFolder(root, size=8)[0]
    >>> image.shape, label, heat.shape, float(token)
    (torch.Size([3, 8, 8]), 0, torch.Size([8, 8]), 1.0)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        size: int = 224,
        map_transform: Callable[[Tensor, int], Tensor] | None = None,
        missing: str = "error",
        labels: str = "index",
    ) -> None:
        self.root = Path(root)
        self.size = check_int(size, "size", minimum=1)
        if missing not in ("error", "token"):
            raise ValueError(f"missing must be 'error' or 'token'; got {missing!r}")
        if not self.root.is_dir():
            raise ValueError(f"no such folder: {self.root}")
        self.map_transform = map_transform
        self.classes = sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        if not self.classes:
            raise ValueError(
                f"{self.root} has no class folders; expected DIR/<class>/<image> beside <image>.npy"
            )
        if labels not in ("index", "imagenet"):
            raise ValueError(f"labels must be 'index' or 'imagenet'; got {labels!r}")
        numbers = list(range(len(self.classes)))
        if labels == "imagenet":
            table = wnid_to_index()
            unknown = [name for name in self.classes if name not in table]
            if unknown:
                raise ValueError(
                    f"labels='imagenet' needs WordNet-id folder names; {unknown[0]!r} is not one"
                )
            numbers = [table[name] for name in self.classes]
        self.items: list[tuple[Path, int, Path | None]] = []
        without: list[Path] = []
        for label, name in zip(numbers, self.classes, strict=True):
            for path in sorted((self.root / name).iterdir()):
                if path.suffix.lower() not in _IMAGE_SUFFIXES or path.name.endswith(".map.png"):
                    continue
                heat: Path | None = None
                for candidate in (path.with_suffix(".npy"), path.with_name(path.stem + ".map.png")):
                    if candidate.is_file():
                        heat = candidate
                        break
                if heat is None:
                    without.append(path)
                self.items.append((path, label, heat))
        if not self.items:
            raise ValueError(f"no images in the class folders of {self.root}")
        if len(without) == len(self.items):
            raise ValueError(
                f"none of the {len(self.items)} images in {self.root} has a human map beside it "
                f"(expected e.g. {without[0].with_suffix('.npy').name} or {without[0].stem}.map.png)"
            )
        if without and missing == "error":
            raise ValueError(
                f"{len(without)} of {len(self.items)} images in {self.root} have no human map, "
                f"e.g. {without[0]} (pass missing='token' to train on them with token 0)"
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, int, Tensor, Tensor]:
        path, label, heat_path = self.items[index]
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        if heat_path is None:
            return pixels, label, torch.zeros(self.size, self.size), torch.tensor(0.0)
        heat = _read_map(heat_path)
        if self.map_transform is not None:
            heat = self.map_transform(heat, self.size)
        else:
            heat = F.interpolate(heat[None, None], size=(self.size, self.size), mode="bilinear")[0, 0]
        heat = heat.clamp_min(0)
        if tuple(heat.shape) != (self.size, self.size):
            raise ValueError(
                f"map_transform returned shape {tuple(heat.shape)}; expected ({self.size}, {self.size})"
            )
        return pixels, label, heat, torch.tensor(1.0)


def _stack(dataset: Dataset[Any]) -> tuple[Tensor, Tensor, Tensor]:
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    images = torch.stack([item[0] for item in items])
    labels = torch.tensor([int(item[1]) for item in items])
    maps = torch.stack([item[2] for item in items])
    return images, labels, maps


def harmonize(
    model: nn.Module,
    dataset: Dataset[Any],
    epochs: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    strength: float = 1.0,
    validation: Dataset[Any] | None = None,
    batch_size: int = 32,
    seed: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    **train_options: Any,
) -> TrainingHistory:
    """Train ``model`` in place with :func:`harmonization_loss` on the shared training loop.

    ``dataset`` yields ``(image, label, map, token)`` (as :class:`HumanMapFolder`) or
    ``(image, label, map)`` (token 1). The loop (:func:`spyglass.training.train`) brings
    seeded shuffling, the progress bar and atomic, resumable checkpoints; with
    ``validation`` (same items), each epoch reports ``accuracy`` and the ``alignment``
    score (:func:`alignment_score`, Saliency) and its ``constant`` count. ``strength=0``
    trains the same recipe without the map term — the baseline to compare against.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(256, 2))
    >>> data = TensorDataset(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 0, 1]), torch.rand(4, 8, 8))
    >>> harmonize(model, data, epochs=1, batch_size=2, progress=False).steps
    2
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def loss(net: nn.Module, batch: Any) -> Tensor:
        if not isinstance(batch, (list, tuple)) or len(batch) not in (3, 4):
            raise ValueError(
                "harmonize's dataset must yield (image, label, map) or (image, label, map, token)"
            )
        images, labels, maps = batch[:3]
        tokens = batch[3].to(images.dtype) if len(batch) == 4 else None
        value = harmonization_loss(net, images, labels, maps, tokens, strength=strength)
        assert isinstance(value, Tensor)
        return value

    validate = None
    if validation is not None:
        val_images, val_labels, val_maps = _stack(validation)

        def validate(net: nn.Module) -> dict[str, float]:
            device = next(net.parameters()).device
            with torch.no_grad():
                logits = torch.cat([net(chunk.to(device)) for chunk in val_images.split(batch_size)])
            accuracy = float((logits.argmax(1).cpu() == val_labels).float().mean())
            result = alignment_score(net, val_images.to(device), val_labels, val_maps.to(device))
            constant = float(result.n_constant)
            return {
                "accuracy": accuracy,
                "alignment": result.score if not math.isnan(result.score) else 0.0,
                "constant": constant,
            }

    return train(
        model,
        dataset,
        loss,
        optimizer,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        validate=validate,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        desc="harmonize",
        **train_options,
    )
