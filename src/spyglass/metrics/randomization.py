"""A sanity check: do the maps change when the model's top layers are re-initialised?

Why our own: the check needs a copy of the method *and* its model with some layers
reset, taken so that the user's model is never touched. Copying the method with
``copy.deepcopy`` copies its model along with everything that refers to it (a Grad-CAM's
split of the model, say), consistently; the layers to reset are found by running the
copy once and recording which parameterised layers run last, so it works on any
architecture without a list of layer names.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from spyglass.attributions import Attribution
from spyglass.engines.state import inference_mode
from spyglass.metrics._base import Metric, check_attribution, check_images_targets, check_maps, register
from spyglass.metrics._stats import spearman_rows
from spyglass.models.hooks import hooked
from spyglass.validation import check_int, check_seed

__all__ = ["ModelRandomization", "top_layers"]


def top_layers(model: nn.Module, example: Tensor, count: int) -> list[str]:
    """Names of the last ``count`` layers with parameters and a ``reset_parameters`` to run on ``example``.

    Layers are ordered by when they first run in a forward pass (not by where they are
    declared), so "last" means closest to the output.
    """
    order: dict[str, None] = {}
    candidates = {
        name: module
        for name, module in model.named_modules()
        if list(module.parameters(recurse=False)) and callable(getattr(module, "reset_parameters", None))
    }

    def record(name: str) -> Any:
        return lambda *_: order.setdefault(name, None)

    hooks = [(module, record(name)) for name, module in candidates.items()]
    with hooked(model, hooks, kind="forward_pre"), inference_mode(model), torch.no_grad():
        model(example)
    ran = list(order)
    if count > len(ran):
        raise ValueError(f"layers={count} exceeds the {len(ran)} re-initialisable layers the model runs")
    return ran[-count:]


@register("randomization")
class ModelRandomization(Metric):
    r"""Model randomization sanity check: similarity of the maps before and after the top layers are reset.

    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
    NeurIPS 2018. The ``layers`` parameterised layers closest to the output are
    re-initialised (each layer's own ``reset_parameters``, under ``seed``) in a deep copy of
    the method and its model, and each image's map is compared with its map from the
    randomised model by Spearman's rank correlation (of absolute values by default, as in
    the paper's main figures):

    .. math:: s(x) = \rho_s\big(|\phi^{f}(x)|,\ |\phi^{\tilde f}(x)|\big)

    A method that explains the model must change when the model does: low similarity is
    better. A map that stays the same (an edge detector) fails the check. The method and its
    model are left exactly as found.

    Parameters
    ----------
    method
        A spyglass :class:`~spyglass.attributions.Attribution` (its model is its ``model``).
    images, targets
        ``(N, 3, H, W)`` in [0, 1]; an int or ``(N,)`` class indices.
    layers
        How many of the top layers to re-initialise (1: the classifier head).
    absolute
        Compare ``|φ|`` (default) or the signed maps.
    seed
        Seeds the re-initialisation.

    Calling the metric returns the mean similarity (flat maps, whose ranking is undefined,
    give NaN in :meth:`scores` and are left out).

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> saliency = attributions.Saliency(models.load())
    >>> check = metrics.ModelRandomization(saliency, torch.rand(2, 3, 224, 224), 1)
    >>> -1.0 <= check() <= 1.0
    True
    """

    higher_is_better = False

    def __init__(
        self,
        method: Attribution,
        images: Tensor,
        targets: int | Tensor,
        *,
        layers: int = 1,
        absolute: bool = True,
        seed: int = 0,
    ) -> None:
        self.method = check_attribution(method, "its model is the one re-initialised")
        self.images, self.targets = check_images_targets(images, targets, method.model)
        self.layers = check_int(layers, "layers", 1)
        self.absolute = bool(absolute)
        self.seed = check_seed(seed)

    @classmethod
    def for_method(
        cls, method: Attribution, images: Tensor, targets: int | Tensor, **options: Any
    ) -> ModelRandomization:
        return cls(method, images, targets, **options)

    def randomized_method(self) -> Attribution:
        """A deep copy of the method whose model has its top ``layers`` re-initialised."""
        randomized = copy.deepcopy(self.method)
        model = randomized.model
        names = top_layers(model, self.images[:1], self.layers)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self.seed)
            for name in names:
                model.get_submodule(name).reset_parameters()  # type: ignore[operator]
        return randomized

    def scores(self, maps: Tensor | None = None) -> Tensor:
        """``(N,)`` float32 rank correlations; ``maps`` are the method's maps when already computed."""
        original = self.method(self.images, self.targets) if maps is None else maps
        original = check_maps(original, self.images).flatten(1)
        changed = check_maps(self.randomized_method()(self.images, self.targets), self.images).flatten(1)
        if self.absolute:
            original, changed = original.abs(), changed.abs()
        return spearman_rows(original, changed).to(torch.float32).cpu()

    def __call__(self, maps: Tensor | None = None) -> float:
        return float(self.scores(maps).nanmean())

    def evaluate(self, maps: Tensor) -> float:
        return self(maps)

    def __repr__(self) -> str:
        return f"ModelRandomization(layers={self.layers}, absolute={self.absolute})"
