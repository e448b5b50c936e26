"""Self-describing model files: an architecture spec, the preprocessing and a state dict, never pickled code.

:func:`save` writes a model that a spyglass builder made — it carries ``model.spec``: every
model :func:`spyglass.models.load` returns by name (torchvision, timm, EfficientNet-Lite;
e.g. after :func:`spyglass.alignment.harmonize` trained it), and
:func:`spyglass.alignment.lipschitz_classifier` — as one ``torch.save`` file of plain data:
``{"format", "version", "spec", "preprocessing", "state_dict"}``, the preprocessing being the
:class:`VisionModel`'s input size, normalisation, class names, resize and interpolation.
:func:`load_file` reads it with ``torch.load(weights_only=True)`` (no code runs on load),
rebuilds the architecture with the builder the spec names — only builders listed in
:data:`BUILDERS`, none of which downloads anything — wraps it with the recorded
preprocessing and loads the weights. :func:`spyglass.models.load` accepts such a file
wherever it accepts a model name, so every command's ``--model`` does too.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from spyglass.models.vision_model import VisionModel
from spyglass.training.checkpoint import save_checkpoint

__all__ = ["BUILDERS", "FORMAT", "is_model_file", "load_file", "save"]

FORMAT = "spyglass-model"
_VERSION = 1
# Builder name → "module:function" taking the spec and returning the model with fresh weights.
# Imported lazily, so that reading a file never imports what it does not need.
BUILDERS = {
    "lipschitz_classifier": "spyglass.alignment.lipschitz:build_from_spec",
    "zoo": "spyglass.models.zoo:build_from_spec",
}


def _builder(name: object, path: Path) -> Callable[[dict[str, Any]], VisionModel]:
    if not isinstance(name, str) or name not in BUILDERS:
        raise ValueError(
            f"model file {path} names the builder {name!r}, which spyglass does not know "
            f"(known: {', '.join(sorted(BUILDERS))}); was it written by a newer spyglass?"
        )
    module, function = BUILDERS[name].split(":")
    builder: Callable[[dict[str, Any]], VisionModel] = getattr(importlib.import_module(module), function)
    return builder


def _preprocessing(model: VisionModel) -> dict[str, Any]:
    return {
        "input_size": list(model.input_size),
        "mean": [float(v) for v in model.mean.flatten()],
        "std": [float(v) for v in model.std.flatten()],
        "class_names": list(model.class_names),
        "resize_size": int(model.resize_size),
        "interpolation": model.interpolation,
        "name": model.name,
    }


def _mismatch(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [key for key in expected if key in state and expected[key].shape != state[key].shape]
    if not (missing or unexpected or shapes):
        return None
    return (
        f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
        f"{len(shapes)} of another shape (e.g. {shapes[:3]})"
    )


def save(model: VisionModel, path: str | os.PathLike[str]) -> Path:
    """Write a spec-built model to ``path`` (atomically), for :func:`spyglass.models.load`.

    The architecture is rebuilt from the spec first (fresh weights, nothing downloaded) and
    its weights' names and shapes compared with the model's, so that a model whose network
    was changed after it was built (a new head, say) is refused here rather than written
    as a file that cannot be loaded.

    Parameters
    ----------
    model
        A :class:`VisionModel` made by a spyglass builder (it has a ``spec``: any model
        :func:`spyglass.models.load` returned, or a :func:`~spyglass.alignment.lipschitz_classifier`),
        trained or not, on any device.
    path
        The file to write; its folder must exist.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    TypeError
        If ``model`` is not a VisionModel or has no builder spec (a network wrapped by hand
        is saved as ``network.state_dict()`` and loaded with ``load(name, weights=PATH)``).
    ValueError
        If the model's weights no longer fit the architecture its spec names.

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from spyglass import models
    >>> from spyglass.alignment import lipschitz_classifier
    >>> model = lipschitz_classifier(2, input_size=(16, 16), widths=(4,), depth=1)
    >>> path = models.save(model, Path(tempfile.mkdtemp()) / "lipschitz.pt")
    >>> x = torch.rand(1, 3, 16, 16)
    >>> bool(torch.equal(models.load(str(path))(x), model(x)))
    True
    """
    if not isinstance(model, VisionModel):
        raise TypeError(f"model must be a VisionModel; got {type(model).__name__}")
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict) or spec.get("builder") not in BUILDERS:
        raise TypeError(
            "model has no builder spec (model.spec), so its architecture cannot be written as data: "
            f"save builds of {', '.join(sorted(BUILDERS))}; for other networks save "
            "network.state_dict() and load it with models.load(name, weights=PATH)"
        )
    state = {k: v.detach().cpu() for k, v in model.network.state_dict().items()}
    rebuilt = _builder(spec["builder"], Path(path))(spec)
    problem = _mismatch(rebuilt.network.state_dict(), state)
    if problem is not None:
        raise ValueError(
            f"the model's weights no longer fit the architecture its spec names ({spec}): {problem}; "
            "was its network changed after it was built? Save network.state_dict() instead"
        )
    content = {
        "format": FORMAT,
        "version": _VERSION,
        "spec": spec,
        "preprocessing": _preprocessing(model),
        "state_dict": state,
    }
    return save_checkpoint(content, path)


def _rewrapped(model: VisionModel, options: dict[str, Any], spec: dict[str, Any]) -> VisionModel:
    """The built network with the recorded preprocessing (input size, normalisation, class names…)."""
    wrapped = VisionModel(model.network, **options)
    wrapped.spec = spec  # type: ignore[assignment]
    return wrapped


def is_model_file(name: str) -> bool:
    """Whether ``name`` means a model file: an existing file, or a name ending in ``.pt``/``.pth``."""
    return name.endswith((".pt", ".pth")) or Path(name).is_file()


def load_file(path: str | os.PathLike[str]) -> VisionModel:
    """Read a file written by :func:`save`: the model rebuilt and its weights loaded, in eval mode.

    Raises
    ------
    ValueError
        If the file is missing, unreadable, not a spyglass model file, of another version, names
        an unknown builder, or holds weights that do not fit the architecture.
    """
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise ValueError(f"model file {path} {what}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt, truncated, or holding objects other than plain data
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"model file {path} cannot be read by torch.load(weights_only=True) "
            f"({type(error).__name__}: {reason[:200]}); write one with spyglass.models.save"
        ) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a spyglass model file (written by spyglass.models.save); for a state dict "
            "use models.load(name, weights=PATH)"
        )
    if content.get("version") != _VERSION:
        raise ValueError(f"model file {path} has version {content.get('version')!r}; expected {_VERSION}")
    spec, state = content.get("spec"), content.get("state_dict")
    if not isinstance(spec, dict) or not isinstance(state, dict):
        raise ValueError(f"model file {path} lacks its spec or its state dict")
    builder = _builder(spec.get("builder"), path)
    try:
        model = builder(spec)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as error:
        raise ValueError(f"model file {path} holds a spec its builder refuses: {error}") from None
    preprocessing = content.get("preprocessing")
    if preprocessing is not None:  # files of the first spyglass builds have none: the builder's own
        if not isinstance(preprocessing, dict):
            raise ValueError(f"model file {path} holds preprocessing that is not a table: {preprocessing!r}")
        try:
            options = dict(preprocessing)
            options["input_size"] = tuple(options["input_size"])
            model = _rewrapped(model, options, spec)
        except (TypeError, ValueError, KeyError) as error:
            raise ValueError(
                f"model file {path} holds preprocessing that does not fit its model: {error}"
            ) from None
    try:
        model.network.load_state_dict(state)
    except RuntimeError as error:
        reason = " ".join(line.strip() for line in str(error).splitlines())
        raise ValueError(f"the weights in {path} do not fit its architecture: {reason[:400]}") from None
    return model.eval()
