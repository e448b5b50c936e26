"""A sanity check: do the maps change when the model's top layers are re-initialised?

Why our own: the check needs the method built on a copy of the model with some layers
reset, taken so that the user's model is never touched. The method is given by name or
as a factory ``model -> explainer``, so it is built afresh on the copy (with everything
that refers to the model, a Grad-CAM's split of it, say); the layers to reset are found
by running the copy once and recording which parameterised layers run last, so it works
on any architecture without a list of layer names.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from spyglass.engines.state import eval_mode
from spyglass.metrics._base import MethodMetric, MethodSpec, check_maps, register
from spyglass.metrics._stats import spearman_rows
from spyglass.models.hooks import hooked
from spyglass.validation import check_bool, check_int, check_measured, check_seed

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
    with hooked(model, hooks, kind="forward_pre"), eval_mode(model), torch.no_grad():
        model(example)
    ran = list(order)
    if count > len(ran):
        raise ValueError(f"layers={count} exceeds the {len(ran)} re-initialisable layers the model runs")
    return ran[-count:]


@register("randomization")
class ModelRandomization(MethodMetric):
    r"""Model randomization sanity check: similarity of the maps before and after the top layers are reset.

    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, "Sanity Checks for Saliency Maps",
    NeurIPS 2018. The ``layers`` parameterised layers closest to the output are
    re-initialised (each layer's own ``reset_parameters``, under ``seed``) in a deep copy of
    the model, the method is built on that copy, and each image's map is compared with its
    map from the original model by Spearman's rank correlation (of absolute values by
    default, as in the paper's main figures):

    .. math:: s(x) = \rho_s\big(|\phi^{f}(x)|,\ |\phi^{\tilde f}(x)|\big)

    A method that explains the model must change when the model does: low similarity is
    better. A map that stays the same (an edge detector) fails the check. The model is left
    exactly as found.

    Parameters
    ----------
    model
        The classifier whose copy is randomised.
    images, targets
        ``(N, 3, H, W)`` in [0, 1]; an int or ``(N,)`` class indices.
    layers
        How many of the top layers to re-initialise (1: the classifier head).
    absolute
        Compare ``|φ|`` (default) or the signed maps.
    seed
        Seeds the re-initialisation.
    batch_size, progress
        The batch size of a method given by name; progress bars (none here: two calls of the
        method).

    Calling the metric on a method (a registered name or a factory ``model -> explainer``)
    returns the mean similarity (flat maps, whose ranking is undefined, give NaN in
    :meth:`scores` and are left out).

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> check = metrics.ModelRandomization(models.load(), torch.rand(2, 3, 224, 224), 1)
    >>> -1.0 <= check("saliency") <= 1.0
    True
    """

    higher_is_better = False
    reuses_maps = True

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: int | Tensor,
        *,
        layers: int = 1,
        absolute: bool = True,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, images, targets, batch_size=batch_size, progress=progress)
        self.layers = check_int(layers, "layers", 1)
        self.absolute = check_bool(absolute, "absolute")
        self.seed = check_seed(seed)

    def randomized_model(self) -> nn.Module:
        """A deep copy of the model with its top ``layers`` re-initialised (the same for the same seed)."""
        model = copy.deepcopy(self.model)
        names = top_layers(model, self.images[:1], self.layers)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self.seed)
            for name in names:
                model.get_submodule(name).reset_parameters()  # type: ignore[operator]
        return model

    def scores(self, method: MethodSpec, *, maps: Tensor | None = None) -> Tensor:
        """``(N,)`` float32 rank correlations; ``maps`` are the method's maps when already computed."""
        original = self.explainer(method)(self.images, self.targets) if maps is None else maps
        original = check_maps(original, self.images).flatten(1)
        randomized = self.explainer(method, self.randomized_model())
        changed = check_maps(randomized(self.images, self.targets), self.images).flatten(1)
        if self.absolute:
            original, changed = original.abs(), changed.abs()
        return spearman_rows(original, changed).to(torch.float32).cpu()

    def __call__(self, method: MethodSpec, *, maps: Tensor | None = None) -> float:
        """The mean rank correlation over the images, NaN (flat maps) left out."""
        return check_measured(
            self.scores(method, maps=maps),
            "ModelRandomization",
            "every map is flat (constant) on the model or its randomised copy, so no ranking is defined",
        )

    def __repr__(self) -> str:
        return f"ModelRandomization(layers={self.layers}, absolute={self.absolute})"
