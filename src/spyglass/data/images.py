"""Reading images from files and folders into ``[0, 1]`` batches.

A source is an image file, a list of files, or a directory. A directory laid out like
torchvision's ``ImageFolder`` (one sub-folder per class) gives labels: sub-folders named
by WordNet id (``n01440764``) or by class index (``0``, ``217``) map to ImageNet
indices. Files in a flat directory whose names start with a WordNet id
(``n01440764_tench.jpg``) are labelled the same way; other files get the label -1.
Unreadable files are skipped, with one warning that lists them all.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from spyglass.data.imagenet import wnid_to_index
from spyglass.progress import progress_bar
from spyglass.validation import check_bool, check_callable, check_int

__all__ = ["IMAGE_SUFFIXES", "ImageSet", "UnreadableImagesWarning", "find_images", "read_images"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})
_WNID = re.compile(r"^(n\d{8})")

Transform = Callable[[Image.Image], Tensor]


class UnreadableImagesWarning(UserWarning):
    """Some image files could not be decoded and were skipped."""


@dataclass(frozen=True)
class ImageSet:
    """Images read from disk, with their labels and where they came from.

    Attributes
    ----------
    images
        ``(N, 3, H, W)`` float32 in [0, 1].
    labels
        ``(N,)`` ImageNet class indices, -1 where the source does not say.
    paths
        The file each image was read from.
    """

    images: Tensor
    labels: Tensor
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        """File names without suffix, for captions."""
        return [path.stem for path in self.paths]


def _label_of_folder(name: str) -> int | None:
    if _WNID.fullmatch(name):
        return wnid_to_index().get(name)
    if name.isdigit():
        return int(name)
    return None


def _label_of_file(path: Path) -> int:
    match = _WNID.match(path.name)
    return wnid_to_index().get(match.group(1), -1) if match else -1


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def find_images(source: str | Path | Sequence[str | Path]) -> list[tuple[Path, int]]:
    """List ``(path, label)`` for every image in ``source``, sorted within each folder.

    Parameters
    ----------
    source
        An image file, a sequence of image files, or a directory (flat, or one level of
        class sub-folders).

    Raises
    ------
    ValueError
        If a path does not exist, a class sub-folder has a name that is neither a WordNet
        id nor a class index, or no image is found.
    """
    expected = "source must be a path (str or Path) of an image file or a folder, or a list of them"
    if isinstance(source, (str, Path)):
        items: list[object] = [source]
    elif isinstance(source, Sequence) and not isinstance(source, bytes):
        items = list(source)
    else:
        raise TypeError(f"{expected}; got {type(source).__name__}")
    bad = [item for item in items if not isinstance(item, (str, Path)) or item == ""]
    if bad:
        raise TypeError(f"{expected}; got an item {bad[0]!r} ({type(bad[0]).__name__})")
    if not items:
        raise ValueError(f"{expected}; got an empty list")
    sources = [Path(item) for item in items]  # type: ignore[arg-type]
    found: list[tuple[Path, int]] = []
    for path in sources:
        try:
            exists = path.exists()
        except ValueError:  # a path with a NUL byte, which no file system accepts
            raise ValueError(f"{expected}; got {str(path)!r}, which no file can be named") from None
        if not exists:
            raise ValueError(f"no such file or directory: {path}")
        if path.is_file():
            found.append((path, _label_of_file(path)))
            continue
        folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        files = sorted(p for p in path.iterdir() if _is_image(p))
        found.extend((p, _label_of_file(p)) for p in files)
        for folder in folders:
            label = _label_of_folder(folder.name)
            if label is None:
                raise ValueError(
                    f"sub-folder {folder.name!r} of {path} is neither a WordNet id (n01440764) nor a "
                    "class index; an ImageFolder-style directory needs one of those as folder names"
                )
            found.extend((p, label) for p in sorted(folder.iterdir()) if _is_image(p))
    if not found:
        raise ValueError(
            f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(map(str, sources))}"
        )
    return found


def read_images(
    source: str | Path | Sequence[str | Path],
    transform: Transform,
    *,
    limit: int | None = None,
    per_class: int | None = None,
    progress: bool = True,
) -> ImageSet:
    """Read images with ``transform`` (typically ``model.preprocess``) into one batch.

    Parameters
    ----------
    source
        See :func:`find_images`.
    transform
        PIL image → ``(3, H, W)`` tensor in [0, 1]; every image must come out the same size.
    limit
        Keep at most this many images (in listing order).
    per_class
        Keep at most this many images of each label.
    progress
        Show a progress bar (on a terminal).

    Examples
    --------
    >>> from spyglass import data, models
    >>> model = models.load()
    >>> batch = data.read_images("photos/", model.preprocess)   # doctest: +SKIP
    >>> batch.images.shape                                      # doctest: +SKIP
    torch.Size([12, 3, 224, 224])
    """
    check_callable(transform, "transform", "(PIL image -> (3, H, W) tensor in [0, 1]), e.g. model.preprocess")
    if limit is not None:
        limit = check_int(limit, "limit", 1, hint="at most this many images; None for all")
    if per_class is not None:
        per_class = check_int(per_class, "per_class", 1, hint="at most this many images of each label")
    check_bool(progress, "progress")
    entries = find_images(source)
    if per_class is not None:
        counts: dict[int, int] = {}
        kept = []
        for path, label in entries:
            if counts.get(label, 0) < per_class:
                counts[label] = counts.get(label, 0) + 1
                kept.append((path, label))
        entries = kept
    if limit is not None:
        entries = entries[:limit]
    tensors: list[Tensor] = []
    labels: list[int] = []
    paths: list[Path] = []
    unreadable: list[str] = []
    for path, label in progress_bar(entries, enabled=progress, desc="reading images", unit="img"):
        try:
            with warnings.catch_warnings():
                # An image between PIL's limit and twice it only warns; a decompression bomb
                # either way, skipped like the ones past twice the limit.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    tensor = transform(image.convert("RGB"))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            unreadable.append(
                f"{path} (DecompressionBombError: more pixels than PIL's limit of "
                f"{Image.MAX_IMAGE_PIXELS}, a possible decompression bomb)"
            )
            continue
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            unreadable.append(f"{path} ({type(error).__name__})")
            continue
        if not isinstance(tensor, Tensor) or tensor.ndim != 3 or tensor.shape[0] != 3:
            what = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise ValueError(
                f"transform must turn a PIL image into a (3, H, W) tensor; got {what} for {path}"
            )
        tensors.append(tensor)
        labels.append(label)
        paths.append(path)
    if unreadable:
        warnings.warn(
            f"skipped {len(unreadable)} unreadable image file(s): {'; '.join(unreadable)}",
            UnreadableImagesWarning,
            stacklevel=2,
        )
    if not tensors:
        raise ValueError(f"none of the {len(entries)} image file(s) could be read")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"transform must give images of one size to batch them; got {sorted(shapes)}")
    return ImageSet(images=torch.stack(tensors), labels=torch.tensor(labels, dtype=torch.long), paths=paths)
