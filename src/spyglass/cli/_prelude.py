"""What every ``spyglass`` command does before its own work, written once.

The option types give each idea one spelling across commands (``--model/-m``,
``--target/-t``, positional image paths, ``--batch-size``, ``--limit``, ``--progress``);
the old spellings live on as hidden aliases (``--class/-c``, ``--images/-i``,
``--data/-d``) that :func:`merge_target` and :func:`merge_paths` fold into the new ones.
:func:`user_errors` turns a user's mistake into one ``error: …`` line and exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spyglass import models

if TYPE_CHECKING:
    from torch import Tensor

    from spyglass.models import VisionModel

__all__ = [
    "DEFAULT_METHODS",
    "USER_ERRORS",
    "BatchSizeOption",
    "ClassAlias",
    "ImagePaths",
    "LimitOption",
    "MethodsOption",
    "ModelOption",
    "ProgressOption",
    "SettingsOption",
    "TargetOption",
    "check_class",
    "check_out",
    "check_out_file",
    "choose_methods",
    "load_model",
    "merge_paths",
    "merge_target",
    "method_options",
    "one_line",
    "read_images",
    "resolve_class",
    "resolve_targets",
    "scoped_options",
    "user_errors",
]

# Exceptions that mean "the user asked for something that cannot be done": bad values
# (ValueError/TypeError, raised by every library check), weights that are not on this
# machine, and a path that cannot be read or written (OSError). Anything else is a bug and
# keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, models.WeightsUnavailableError, OSError)

# Cheap methods for `explain` and `evaluate` when none is named; only the registered ones are used.
DEFAULT_METHODS: tuple[str, ...] = ("saliency", "integrated_gradients", "gradcam")

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="efficientnet_lite0/1/2, a torchvision name (resnet50), timm/<name>, or a model file "
        "(spyglass train …); see `spyglass models`.",
    ),
]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
SettingsOption = Annotated[
    str,
    typer.Option(
        "--settings",
        help="Each method's settings at this level: default (its own defaults), demo (the demo "
        "page's), quick (a smoke run) or cheap (tiny test models); --option overrides them.",
    ),
]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, help="Images per forward pass (bounds memory).")
]
LimitOption = Annotated[int | None, typer.Option("--limit", min=1, help="Read at most this many images.")]
ImagePaths = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="IMAGE_OR_DIR",
        help="Image files or folders of images (a folder may hold one sub-folder per class).",
        show_default=False,
    ),
]
TargetOption = Annotated[
    int | None,
    typer.Option(
        "--target", "-t", help="Class index to explain (default: the images' top-1).", show_default=False
    ),
]
# `concepts` and `visualize` called the class `--class/-c` before the vocabulary was one.
ClassAlias = Annotated[int | None, typer.Option("--class", "-c", hidden=True, show_default=False)]
MethodsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--method",
        "-M",
        help="Attribution method, repeatable (default: saliency, integrated_gradients and gradcam "
        "where registered). See `spyglass explain --list-methods`.",
        show_default=False,
    ),
]


def one_line(text: str) -> str:
    """``text`` with its lines joined: a message stays one line (a dependency's may span several)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


@contextmanager
def user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn a user error raised in the block into ``error: …`` on stderr and exit code 2.

    Parameters
    ----------
    kinds
        The exceptions that count as the user's (default: :data:`USER_ERRORS`); writing the
        results, for example, expects only ``OSError`` (an unwritable ``--out``).
    """
    caught = kinds or USER_ERRORS
    try:
        yield
    except caught as error:
        typer.secho(f"error: {one_line(str(error)) or type(error).__name__}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


def check_out(out: Path, flag: str = "--out") -> Path:
    """``out`` if results can be written there: a folder, or a path whose first existing parent is one.

    Checked before any work, so that a run of minutes does not end on an unwritable path.
    Nothing is created here (a run that fails later leaves no empty folder).

    Raises
    ------
    ValueError
        If ``out`` or one of its parents is a file, or the folder that would hold it is not writable.
    """
    import os

    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {out} is a file; results go into a folder: give a folder's path")
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(f"{flag} {out} cannot be a folder: {existing} is a file")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {out} cannot be written: {existing} is not writable")
    return out


def check_out_file(out: Path, kind: str, example: str, flag: str = "--out") -> Path:
    """``out`` if a new ``kind`` file can be written there: not a folder, not an existing file.

    Checked before any work, like :func:`check_out`; a trained model or its weights are never
    overwritten. ``example`` is the file name suggested when ``out`` is a folder.
    """
    if out.is_dir():
        raise ValueError(f"{flag} {out} is a folder; give the {kind}'s path, e.g. {out / example}")
    if out.exists():
        raise ValueError(
            f"{flag} {out} exists; remove it or give another path (a {kind} is never overwritten)"
        )
    check_out(out.parent if str(out.parent) else Path("."), flag)
    return out


def load_model(name: str) -> VisionModel:
    """The model ``--model`` names, in eval mode (raises a user error when it cannot be had)."""
    return models.load(name)


def merge_paths(paths: Sequence[Path] | None, *aliases: Sequence[Path] | None) -> list[Path]:
    """The image paths given positionally, then those of the old spellings (``--data``, ``--images``).

    Raises
    ------
    ValueError
        If no path is given at all.
    """
    merged = list(paths or [])
    for alias_paths in aliases:
        merged.extend(alias_paths or [])
    if not merged:
        raise ValueError("no images given: name image files or folders, e.g. `photo.jpg photos/`")
    return merged


def read_images(
    model: VisionModel, paths: Sequence[Path], *, limit: int | None = None, progress: bool = True
) -> tuple[Tensor, list[Path]]:
    """Read ``paths`` (files or folders) with the model's preprocessing: ``(images, paths)``."""
    from spyglass import data

    batch = data.read_images(list(paths), model.preprocess, limit=limit, progress=progress)
    return batch.images, batch.paths


def merge_target(target: int | None, old_class: int | None) -> tuple[int | None, str]:
    """Fold the old ``--class`` into ``--target``: ``(class or None, the flag the user typed)``."""
    if old_class is None:
        return target, "--target"
    if target is not None and target != old_class:
        raise ValueError(
            f"--target {target} and --class {old_class} disagree: give the class once, as --target"
        )
    return old_class, "--target" if target is not None else "--class"


def check_class(target: int, model: VisionModel, flag: str = "--target") -> int:
    """``target`` if it is one of the model's classes, else a ValueError naming ``flag``."""
    if not 0 <= target < model.num_classes:
        raise ValueError(f"{flag} must be a class index in [0, {model.num_classes - 1}]; got {target}")
    return target


def resolve_targets(
    model: VisionModel,
    images: Tensor,
    target: int | None,
    *,
    flag: str = "--target",
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[Tensor, list[str]]:
    """The class to explain for each image, and why: the given one, else each image's top-1.

    Returns
    -------
    targets, reasons
        ``(N,)`` class indices, and per image ``"top-1, 97.3%"`` or the flag that set it.
    """
    import torch

    if target is not None:
        check_class(target, model, flag)
        return torch.full((images.shape[0],), target, dtype=torch.long), [flag] * images.shape[0]
    predictions = model.predict(images, top_k=1, batch_size=batch_size, progress=progress)
    reasons = [f"top-1, {100 * float(p):.1f}%" for p in predictions.probabilities[:, 0]]
    return predictions.indices[:, 0], reasons


def resolve_class(
    model: VisionModel,
    images: Tensor,
    target: int | None,
    *,
    flag: str = "--target",
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[int, str]:
    """One class for all the images, and why: the given one, else their most common top-1.

    Ties go to the smaller class index.
    """
    import torch

    if target is not None:
        return check_class(target, model, flag), flag
    top1, _ = resolve_targets(model, images, None, batch_size=batch_size, progress=progress)
    counts = torch.bincount(top1, minlength=model.num_classes)
    chosen = int(counts.argmax())
    return chosen, f"the top-1 of {int(counts[chosen])} of {len(top1)} image(s)"


def choose_methods(methods: Sequence[str] | None) -> list[str]:
    """The attribution methods named (each checked, before any work), else the registered defaults."""
    from spyglass import attributions

    if methods:
        chosen = list(dict.fromkeys(methods))
    else:
        registered = set(attributions.list_methods())
        chosen = [name for name in DEFAULT_METHODS if name in registered]
        if not chosen:
            raise ValueError("no default method is registered; name one with --method")
    for name in chosen:
        attributions.method_class(name)  # an unknown name fails here, with suggestions
    return chosen


# Set by the command itself from its own options.
_RESERVED_OPTIONS = {"batch_size": "--batch-size", "progress": "--progress", "objective": "(not settable)"}


def _parse_value(text: str) -> object:
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def scoped_options(
    specs: Sequence[str],
    names: Sequence[str],
    *,
    flag: str = "--option",
    kind: str = "method",
    takes: Callable[[str], set[str]] | None = None,
) -> dict[str, dict[str, object]]:
    """``KEY=VALUE`` (every name that takes it) or ``NAME.KEY=VALUE`` (one) → ``{name: {key: value}}``.

    Values are parsed as int, float or bool where they read as one, else kept as text.
    ``takes(name)``, when given, is the set of options ``name`` accepts: an unqualified
    ``KEY=VALUE`` goes to the names that take ``KEY`` (and is an error only if none does);
    without it, to every name.

    Examples
    --------
    >>> scoped_options(["steps=8", "rise.nb_samples=100"], ["rise", "sobol"])
    {'rise': {'steps': 8, 'nb_samples': 100}, 'sobol': {'steps': 8}}
    >>> scoped_options(["steps=8"], ["saliency", "ig"], takes=lambda n: {"steps"} if n == "ig" else set())
    {'saliency': {}, 'ig': {'steps': 8}}
    """
    options: dict[str, dict[str, object]] = {name: {} for name in names}
    for spec in specs:
        key, sep, text = spec.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} must be KEY=VALUE or NAME.KEY=VALUE (e.g. steps=32); got {spec!r}")
        scope, dot, key = key.rpartition(".")
        if key in _RESERVED_OPTIONS:
            raise ValueError(f"{flag} {key} is set by the command; use {_RESERVED_OPTIONS[key]}")
        if dot and scope not in options:
            raise ValueError(f"{flag} {spec!r} names {kind} {scope!r}, which is not among {', '.join(names)}")
        if dot:
            scopes = [scope]
        elif takes is None:
            scopes = list(names)
        else:
            scopes = [name for name in names if key in takes(name)]
            if not scopes:
                raise ValueError(
                    f"{flag} {spec!r}: no chosen {kind} ({', '.join(names)}) takes option {key!r}"
                )
        for name in scopes:
            options[name][key] = _parse_value(text)
    return options


def method_options(specs: Sequence[str], methods: Sequence[str], level: str) -> dict[str, dict[str, object]]:
    """Each method's settings at ``level`` (read from its class), then ``--option`` specs on top."""
    from spyglass import attributions
    from spyglass.registry import check_class_options, keyword_options
    from spyglass.validation import check_choice

    check_choice(level, "--settings", attributions.SETTINGS_LEVELS)

    def takes(name: str) -> set[str]:
        return keyword_options(attributions.method_class(name), positional=("model",))

    given = scoped_options(specs, methods, takes=takes)
    for name in methods:  # METHOD.KEY=VALUE for a method without KEY fails here, before any work
        check_class_options(attributions.method_class(name), given[name], positional=("model",), name=name)
    return {name: {**attributions.method_settings(name, level), **given[name]} for name in methods}
