"""Load a classifier by name, ready to explain, without surprises offline.

Names:

- ``efficientnet_lite0`` (the default), ``efficientnet_lite1``, ``efficientnet_lite2``:
  real ImageNet weights shipped in PyPI packages, so they load with no network at all;
- any torchvision classification model (``resnet50``, ``vit_b_16``, …), with its
  default ImageNet weights through torchvision's own API;
- any timm model with the prefix ``timm/`` (``timm/convnext_tiny.fb_in1k``), with its
  pretrained weights through timm's own API;
- the path of a model file written by :func:`spyglass.models.save` (a model this module
  loaded and then trained, e.g. harmonized, or a spec-built one such as a trained
  1-Lipschitz classifier; see :mod:`spyglass.models.files`).

Every model :func:`load` returns carries ``model.spec``, ``{"builder": "zoo", "arguments":
{"name": NAME}}``, so that :func:`spyglass.models.save` can write it: :func:`build_from_spec`
rebuilds the architecture with fresh weights, downloading nothing, and the file's weights
are loaded into it.

torchvision and timm download weights on first use. Where the weights are neither
cached nor downloadable, :func:`load` fails with one sentence that names the cache
path and how to place the file there; ``weights=PATH`` loads a local state dict instead.
"""

from __future__ import annotations

import difflib
import socket
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
import torchvision
from torch import nn

from spyglass.data.imagenet import imagenet_class_names
from spyglass.models.efficientnet_lite import LITE_VARIANTS, build_efficientnet_lite
from spyglass.models.files import is_model_file, load_file
from spyglass.models.vision_model import VisionModel
from spyglass.validation import check_device

__all__ = ["DEFAULT_MODEL", "WeightsUnavailableError", "available_models", "build_from_spec", "load"]

DEFAULT_MODEL = "efficientnet_lite0"
TIMM_PREFIX = "timm/"
BUILDER = "zoo"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached nor downloadable."""


def available_models() -> list[str]:
    """Every name :func:`load` accepts without the ``timm/`` prefix (timm adds ~1,000 more)."""
    return [*LITE_VARIANTS, *sorted(torchvision.models.list_models(module=torchvision.models))]


def load(
    name: str = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    *,
    weights: str | Path | None = None,
) -> VisionModel:
    """Load a pretrained ImageNet classifier as a :class:`VisionModel` in eval mode.

    Parameters
    ----------
    name
        ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``,
        a torchvision classification model name, ``timm/<timm model name>``, or the path of a
        file written by :func:`spyglass.models.save`.
    device
        Where to put the model (default: CPU): ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, a
        ``torch.device``; one this machine does not have is refused before anything loads.
    weights
        A local state-dict file to load instead of the library's pretrained weights
        (torchvision and timm names only).

    Examples
    --------
    >>> from spyglass import models
    >>> model = models.load()            # EfficientNet-Lite0, offline
    >>> model.input_size
    (224, 224)
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a model name such as {DEFAULT_MODEL!r}; got {name!r}")
    # Checked before anything is built, so that a typo costs nothing.
    target_device = check_device(device) if device is not None else None
    if is_model_file(name):
        if weights is not None:
            raise ValueError(f"{name} is a model file with its own weights; weights= is for model names")
        model = load_file(name)
    else:
        if name in LITE_VARIANTS and weights is not None:
            raise ValueError(f"{name} ships its own weights; weights= is for torchvision and timm models")
        model = _load_named(name, weights, pretrained=True)
    model.eval()
    if target_device is not None:
        model.to(target_device)
    return model


def _load_named(name: str, weights: str | Path | None, *, pretrained: bool) -> VisionModel:
    """The zoo model ``name``; with ``pretrained=False`` its architecture only (fresh weights, offline)."""
    if name in LITE_VARIANTS:
        model = _load_lite(name, pretrained)
    elif name.startswith(TIMM_PREFIX):
        model = _load_timm(name[len(TIMM_PREFIX) :], weights, pretrained)
    elif name in torchvision.models.list_models(module=torchvision.models):
        model = _load_torchvision(name, weights, pretrained)
    else:
        close = difflib.get_close_matches(name, available_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}: expected efficientnet_lite0/1/2, a torchvision classification "
            f"model (e.g. resnet50) or 'timm/<name>' (e.g. timm/convnext_tiny).{hint}"
        )
    model.spec = {"builder": BUILDER, "arguments": {"name": name}}  # type: ignore[assignment]
    return model


def build_from_spec(spec: dict[str, Any]) -> VisionModel:
    """The zoo architecture a spec names, with fresh weights and nothing downloaded; used by ``models.load``.

    ``spec["arguments"]["name"]`` is a name :func:`load` accepts (not a file).

    Examples
    --------
    >>> model = build_from_spec({"builder": "zoo", "arguments": {"name": "resnet18"}})
    >>> model.input_size, model.num_classes
    ((224, 224), 1000)
    """
    arguments = spec.get("arguments")
    name = arguments.get("name") if isinstance(arguments, dict) else None
    if not isinstance(name, str) or not name or is_model_file(name):
        raise ValueError(f"a zoo spec names its model in arguments.name (e.g. 'resnet50'); got {arguments!r}")
    return _load_named(name, None, pretrained=False)


def _load_lite(name: str, pretrained: bool = True) -> VisionModel:
    # Without the packaged weights, the same timm network that build_efficientnet_lite fills.
    network = (
        build_efficientnet_lite(name) if pretrained else timm.create_model(f"tf_{name}", pretrained=False)
    )
    config = timm.data.resolve_data_config({}, model=network)
    size = config["input_size"][1:]
    return VisionModel(
        network,
        input_size=(size[0], size[1]),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        class_names=imagenet_class_names(),
        resize_size=round(size[0] / config["crop_pct"]),
        interpolation=config["interpolation"],
        name=name,
    )


def _load_state_dict(network: nn.Module, path: str | Path, name: str) -> None:
    if not isinstance(path, (str, Path)):
        raise TypeError(f"weights must be the path of a state-dict file; got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise ValueError(f"weights file {path} {what}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, KeyError, RuntimeError... by format
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"weights file {path} is not a state dict that torch.load(weights_only=True) can read: "
            f"save one with torch.save(network.state_dict(), PATH) ({type(error).__name__}: {reason[:200]})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ValueError(
            f"weights file {path} holds a {type(state).__name__}, not a state dict (names → tensors): "
            f"save one with torch.save(network.state_dict(), PATH)"
        )
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as error:  # tensors of the wrong shapes
        reason = " ".join(line.strip() for line in str(error).splitlines())
        raise ValueError(f"{path} does not fit {name}: {reason[:400]}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path} does not fit {name}: {len(result.missing_keys)} missing keys "
            f"(e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected "
            f"(e.g. {result.unexpected_keys[:3]})"
        )


def _load_torchvision(name: str, weights: str | Path | None, pretrained: bool = True) -> VisionModel:
    enum = torchvision.models.get_model_weights(name).DEFAULT
    if weights is not None or not pretrained:
        network = torchvision.models.get_model(name, weights=None)
        if weights is not None:
            _load_state_dict(network, weights, name)
    else:
        try:
            network = torchvision.models.get_model(name, weights=enum)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            if not _looks_like_network_error(error):
                raise
            cache = Path(torch.hub.get_dir()) / "checkpoints"
            filename = Path(urlparse(enum.url).path).name
            raise WeightsUnavailableError(
                f"the weights of {name} are not cached and cannot be downloaded here: put "
                f"{filename} (from {enum.url}) into {cache}/, or pass weights=PATH to load a local file"
            ) from None
    transform = enum.transforms()
    crop = transform.crop_size[0]
    return VisionModel(
        network,
        input_size=(crop, crop),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        class_names=enum.meta["categories"],
        resize_size=transform.resize_size[0],
        interpolation="bicubic" if "BICUBIC" in str(transform.interpolation) else "bilinear",
        name=name,
    )


def _load_timm(name: str, weights: str | Path | None, pretrained: bool = True) -> VisionModel:
    if not timm.is_model(name.split(".")[0]):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" Did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise ValueError(f"unknown timm model {name!r}.{hint}")
    if weights is not None or not pretrained:
        network = timm.create_model(name, pretrained=False)
        if weights is not None:
            _load_state_dict(network, weights, TIMM_PREFIX + name)
    else:
        network = _create_pretrained_timm(name)
    config = timm.data.resolve_data_config({}, model=network)
    size = config["input_size"][1:]
    num_classes = int(getattr(network, "num_classes", 1000))
    names = imagenet_class_names() if num_classes == 1000 else [f"class {i}" for i in range(num_classes)]
    return VisionModel(
        network,
        input_size=(size[0], size[1]),
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        class_names=names,
        resize_size=round(size[0] / config["crop_pct"]),
        interpolation="bicubic" if config["interpolation"] == "bicubic" else "bilinear",
        name=TIMM_PREFIX + name,
    )


def _create_pretrained_timm(name: str) -> nn.Module:
    """``timm.create_model(name, pretrained=True)``, from the local cache when it has the file.

    huggingface_hub retries an unreachable hub for most of a minute; so a cached file is
    handed to timm directly, and a missing one fails at once when the hub's host does not
    even resolve.
    """
    import huggingface_hub
    from huggingface_hub import constants

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    cache = Path(constants.HF_HUB_CACHE)
    if repo:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            cached = huggingface_hub.try_to_load_from_cache(repo, filename)
            if isinstance(cached, str):
                return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached})
        host = urlparse(constants.ENDPOINT).hostname or ""
        try:
            socket.getaddrinfo(host, 443)
        except OSError:
            raise WeightsUnavailableError(
                f"the weights of timm/{name} are not in the Hugging Face cache ({cache}) and the "
                f"hub cannot be reached: on a machine with network run "
                f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"`, copy "
                f"its {cache}/models--{repo.replace('/', '--')} folder here, or pass weights=PATH"
            ) from None
    try:
        return timm.create_model(name, pretrained=True)
    except Exception as error:
        if not _looks_like_network_error(error):
            raise
        raise WeightsUnavailableError(
            f"the weights of timm/{name} could not be downloaded ({type(error).__name__}); place them "
            f"in the Hugging Face cache ({cache}) or pass weights=PATH"
        ) from None


def _looks_like_network_error(error: BaseException) -> bool:
    chain: BaseException | None = error
    while chain is not None:
        if isinstance(chain, (urllib.error.URLError, socket.gaierror, ConnectionError, TimeoutError)):
            return True
        if type(chain).__name__ in {"LocalEntryNotFoundError", "ConnectError", "ConnectTimeout"}:
            return True
        chain = chain.__cause__ or chain.__context__
    return False
