r"""EVA (Fel, Ducoffe et al., CVPR 2023): attribution by verified perturbation analysis.

Why our own: no PyTorch toolbox offers EVA and the authors' code link is dead. It stands on
spyglass's own bound propagation (:mod:`spyglass.bounds`, IBP and CROWN over the traced
graph), the model split of :func:`spyglass.models.split` (the hybrid mode) and the shared
grid cells of :mod:`spyglass.engines.grid` (the regions).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx as fx
from torch import Tensor, nn

from spyglass import bounds as bound_propagation
from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._registry import register
from spyglass.engines.forward import iter_batches, model_device
from spyglass.engines.gradients import input_gradients
from spyglass.engines.grid import cell_of_pixel, upsample_cells
from spyglass.engines.state import eval_mode
from spyglass.models import VisionModel, split, trace
from spyglass.progress import progress_bar
from spyglass.validation import check_bool, check_choice, check_float, check_int, check_logits, check_seed

__all__ = ["EVA", "EVA_BOUNDS", "EVA_FORMS", "default_eva_layer"]

EVA_BOUNDS: tuple[str, ...] = ("ibp", "crown", "hybrid", "empirical")
"""How the adversarial overlap is bounded: ``"ibp"`` and ``"crown"`` are verified end to end."""

EVA_FORMS: tuple[str, ...] = ("margin", "paper")
"""How a verified bound of the overlap is formed from the bounds of the network's output."""

_VERIFIED = ("ibp", "crown")


def default_eva_layer(model: nn.Module) -> str:
    """Where the hybrid mode cuts ``f = h ∘ g`` by default: the input of the model's last ``Linear``.

    Found on the traced graph, with no per-architecture code: the last ``nn.Linear`` that
    runs, then up its input through single-input operations (a flatten, a dropout) to the
    module that produces it. ``h`` is then the classifier (and those operations): affine,
    so its verified bound with the margin form is exact. For EfficientNet-Lite0 that is
    the pooled features (``global_pool.flatten``, 1280 values); for a torchvision ResNet
    ``avgpool``.

    Examples
    --------
    >>> from spyglass import models
    >>> from spyglass.attributions.eva import default_eva_layer
    >>> default_eva_layer(models.load())
    'global_pool.flatten'
    """
    traced = trace(model)
    linears = [
        node
        for node in traced.graph.nodes
        if node.op == "call_module" and isinstance(traced.get_submodule(node.target), nn.Linear)
    ]
    if not linears:
        raise ValueError(
            f"found no nn.Linear in {type(model).__name__} to cut the hybrid mode before; pass layer= "
            "explicitly (see spyglass.models.list_layers(model))"
        )
    node = linears[-1].args[0]
    while isinstance(node, fx.Node) and node.op != "call_module":
        inputs = node.all_input_nodes
        if node.op == "placeholder" or len(inputs) != 1:
            raise ValueError(
                f"the last nn.Linear of {type(model).__name__} ({linears[-1].target}) does not read one "
                "module's output; pass layer= explicitly (see spyglass.models.list_layers(model))"
            )
        node = inputs[0]
    if not isinstance(node, fx.Node):
        raise ValueError(f"the last nn.Linear of {type(model).__name__} reads no module; pass layer=")
    target = str(node.target)
    prefix = "network." if isinstance(model, VisionModel) else ""
    return target[len(prefix) :] if target.startswith(prefix) else target


def _specification(classes: int, target: int, adversary: int | None) -> Tensor:
    """Rows ``e_{c′} − e_c``: for every ``c′ ≠ c``, or for the one ``adversary``."""
    others = [adversary] if adversary is not None else [k for k in range(classes) if k != target]
    spec = torch.zeros(len(others), classes)
    spec[torch.arange(len(others)), torch.tensor(others)] = 1.0
    spec[:, target] -= 1.0
    return spec


BoundFn = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]


@register("eva")
class EVA(Attribution):
    r"""EVA: how much fixing each region shrinks the verified adversarial overlap of a ball.

    Fel, Ducoffe, Vigouroux, Cadène, Capelle, Nicodème & Serre, "Don't Lie to Me! Robust and
    Efficient Explainability with Verified Perturbation Analysis", CVPR 2023. Around the
    image ``x`` of class ``c`` lies the ball :math:`B = \{\delta : \|\delta\|_\infty \le
    \varepsilon\}`; the *adversarial overlap* is the confidence of its best adversarial point,

    .. math:: AO(x, B) = \max_{\delta \in B} \max_{c' \ne c} f_{c'}(x + \delta) - f_c(x + \delta),

    upper-bounded here by verified bound propagation (:mod:`spyglass.bounds`). Region ``u``
    (a cell of a ``grid_size × grid_size`` grid, all channels, the cells of
    :mod:`spyglass.engines.grid`) scores the drop of the overlap when its pixels are fixed,
    :math:`B_u = \{\delta \in B : \delta_u = 0\}`:

    .. math:: EVA(x, u) = AO(x, B) - AO(x, B_u)

    with no normalisation. Because every other pixel stays free, the interactions of ``u``
    with the rest are accounted for, and a region the model provably cannot use scores
    exactly 0. :math:`AO(x, B)` is bounded once per image and the ``grid_size²`` sets
    :math:`B_u` in batches of ``batch_size``.

    The bound of the overlap (``form``). ``"margin"`` (default) bounds the differences
    :math:`f_{c'} - f_c` directly, through a specification matrix (rows
    :math:`e_{c'} - e_c`) folded into the last affine layer, and takes the largest upper
    bound; ``"paper"`` is the paper's :math:`\max_{c'} \bar f_{c'}(x, B) - \underline
    f_c(x, B)`, never tighter.

    Guarantee (``bounds``; :attr:`guaranteed` says which holds):

    - ``"ibp"`` (interval bounds) and ``"crown"`` (linear bounds, intersected with IBP's):
      verified end to end; every perturbation in the ball is covered, so no region's
      influence can be missed. With IBP, :math:`EVA \ge 0` (IBP is monotone under
      inclusion). On a whole ImageNet network both are loose at the paper's ε (IBP's
      intervals grow layer after layer) and CROWN may not fit in memory: on the default
      EfficientNet-Lite0 at 224 px, IBP's overlap came out the same for ``B`` and every
      ``B_u`` (a map of zeros) even at ε = 1/255 on a photo, and CROWN would need about
      10⁵ GiB of coefficients; ``benchmarks/eva.py`` measures it.
    - ``"hybrid"`` (the paper's ImageNet mode, the default): the model is cut ``f = h ∘ g``
      at ``layer`` (default :func:`default_eva_layer`: the features feeding the
      classifier); ``nb_samples`` uniform perturbations δ in ``B`` (and δ = 0) give, per
      coordinate, the min and max of ``g(x + δ)``: a box that ``h`` is bounded over
      verifiably. Each :math:`B_u` reuses the same draws with the cell zeroed (uniform in
      :math:`B_u` too; common random numbers make a cell the model ignores score exactly
      0). **The sampled box lies inside the true one: the result is not guaranteed.**
    - ``"empirical"``: projected gradient ascent (PGD, ``pgd_steps`` signed steps of
      ``2.5 ε / pgd_steps`` from one random start, shared by all sets, keeping the best
      point seen) *lower*-bounds the overlap in ``B`` and in each :math:`B_u`; no
      guarantee, for comparison. ``form`` does not apply.

    ε is in spyglass's [0, 1] pixel units: the paper's ImageNet ε = 5 is on 0–255 inputs, so
    about 5/255 ≈ 0.02 here (the default). As in the paper, the ball is not intersected with
    the valid pixel range; ``clip=True`` does that.

    Cost per image, with ``R = grid_size²`` regions: ``R + 1`` bound passes (``"ibp"``,
    ``"crown"``; IBP costs about two forward passes); ``(R + 1)(nb_samples + 1)`` forward
    passes of ``g`` and ``R + 1`` bound passes of ``h`` (``"hybrid"``); ``(R + 1)`` times
    ``pgd_steps`` gradient passes and one forward (``"empirical"``).

    Parameters
    ----------
    epsilon
        Radius of the L∞ ball, in (0, 1] pixel units.
    grid_size
        Cells per side of the grid of regions (the paper: 12 on every dataset).
    bounds
        One of :data:`EVA_BOUNDS`, see above.
    form
        One of :data:`EVA_FORMS`, see above.
    adversarial_class
        A targeted explanation: the overlap towards this one class ``c′`` (``f_{c′} − f_c``)
        instead of the largest over all classes (the paper's §4.3).
    layer
        Where ``"hybrid"`` cuts the model (a layer name, see
        :func:`~spyglass.models.list_layers`); default :func:`default_eva_layer`.
    nb_samples
        Random perturbations per set in ``"hybrid"`` (δ = 0 is added to them).
    pgd_steps
        Gradient steps per set in ``"empirical"``.
    clip
        Keep perturbed images in [0, 1] (the paper does not).
    seed
        Seeds the draws of ``"hybrid"`` and ``"empirical"`` (the verified modes draw
        nothing); the same seed gives the same maps at any ``batch_size``, and an
        image's map does not depend on the other images of the call.
    batch_size
        Sets (bound passes) or perturbed images (forward passes) per batch.

    Attributes
    ----------
    guaranteed : bool
        Whether the maps are verified (``"ibp"``, ``"crown"``) or not (``"hybrid"``,
        ``"empirical"``).
    layer : str or None
        The layer ``"hybrid"`` cuts at.
    overlap_ : Tensor
        ``(N,)``, :math:`AO(x, B)` of each image of the last call: a positive value means
        that the ball may hold an adversarial example (certainly, with ``"empirical"``).
    region_overlap_ : Tensor
        ``(N, grid_size²)``, :math:`AO(x, B_u)` of each region, row by row of the grid.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> eva = attributions.EVA(models.load(), grid_size=2, nb_samples=1)  # 10 forward passes
    >>> eva(torch.rand(1, 3, 224, 224), 967).shape, eva.guaranteed
    (torch.Size([1, 224, 224]), False)
    """

    kind = "verified"
    settings = levels(
        cheap={"grid_size": 4, "nb_samples": 4},
        quick={"grid_size": 4, "nb_samples": 3},
        demo={"grid_size": 6, "nb_samples": 6},
    )

    def __init__(
        self,
        model: nn.Module,
        *,
        epsilon: float = 5 / 255,
        grid_size: int = 12,
        bounds: str = "hybrid",
        form: str = "margin",
        adversarial_class: int | None = None,
        layer: str | None = None,
        nb_samples: int = 16,
        pgd_steps: int = 10,
        clip: bool = False,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, batch_size=batch_size, progress=progress)
        self.epsilon = check_float(
            epsilon, "epsilon", minimum=0.0, maximum=1.0, low_open=True, hint="the L∞ radius in [0, 1] pixels"
        )
        self.grid_size = check_int(grid_size, "grid_size", 1)
        self.bounds = check_choice(bounds, "bounds", EVA_BOUNDS)
        self.form = check_choice(form, "form", EVA_FORMS)
        self.adversarial_class = (
            None if adversarial_class is None else check_int(adversarial_class, "adversarial_class", 0)
        )
        self.nb_samples = check_int(nb_samples, "nb_samples", 1)
        self.pgd_steps = check_int(pgd_steps, "pgd_steps", 1)
        self.clip = check_bool(clip, "clip")
        self.seed = check_seed(seed)
        self.overlap_ = torch.empty(0)
        self.region_overlap_ = torch.empty(0)
        self.layer: str | None = None
        self._parts: tuple[fx.GraphModule, fx.GraphModule] | None = None
        if self.bounds == "hybrid":
            self.layer = default_eva_layer(model) if layer is None else layer
            # Split once, here, so that a layer that cannot cut the model fails at construction;
            # h(g(x)) = f(x) is checked on the images of each call (their size is known there).
            self._parts = split(model, self.layer, check=False)
        elif layer is not None:
            raise ValueError(
                f"layer is used by bounds='hybrid' only; got layer={layer!r} with bounds={bounds!r}"
            )

    @property
    def guaranteed(self) -> bool:
        """Whether the maps are verified: the overlaps are true upper bounds (``"ibp"``, ``"crown"``)."""
        return self.bounds in _VERIFIED

    @property
    def label(self) -> str:
        """The figures' title of these maps: the mode, and whether the maps are verified."""
        return f"{self.name} ({self.bounds}, {'verified' if self.guaranteed else 'not guaranteed'})"

    def __repr__(self) -> str:
        return (
            f"EVA(epsilon={self.epsilon:g}, grid_size={self.grid_size}, bounds={self.bounds!r}, "
            f"guaranteed={self.guaranteed}, batch_size={self.batch_size})"
        )

    # --- the algorithm ------------------------------------------------------------------------

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        cells = cell_of_pixel(height, width, self.grid_size, device=images.device)
        device = model_device(self.model)
        maps, overlaps = [], []
        with eval_mode(self.model):
            with torch.no_grad():
                logits = check_logits(self.model(images[:1].to(device)), targets[:1])
                if not bool(torch.isfinite(logits).all()):
                    raise ValueError(
                        "the model returned NaN or infinite logits on the first image; EVA bounds "
                        "finite logits (look at the model's outputs on these images)"
                    )
                if self._parts is not None:
                    self._check_split(images[:1].to(device), logits)
            classes = int(logits.shape[1])
            check_logits(logits.expand(targets.shape[0], -1), targets)
            if self.adversarial_class is not None and self.adversarial_class >= classes:
                raise ValueError(
                    f"adversarial_class must lie in [0, {classes - 1}] (the model has {classes} classes); "
                    f"got {self.adversarial_class}"
                )
            for image, target in progress_bar(
                zip(images.to(device), targets.tolist(), strict=True),
                enabled=self.progress,
                total=images.shape[0],
                desc=self.name,
                unit="image",
            ):
                if self.adversarial_class == target:
                    raise ValueError(
                        f"adversarial_class={target} is the class explained for an image; a targeted "
                        "explanation needs another class"
                    )
                # Every image gets the same draws (as Sobol's images share one design), so an
                # image's map does not depend on the other images of the call.
                generator = torch.Generator().manual_seed(self.seed)
                overlap = self._overlaps(image, int(target), classes, cells.to(device), generator)
                overlaps.append(overlap)
                grid = (overlap[0] - overlap[1:]).view(self.grid_size, self.grid_size)
                maps.append(upsample_cells(grid, (height, width)))
        self.overlap_ = torch.stack([row[0] for row in overlaps]).cpu()
        self.region_overlap_ = torch.stack([row[1:] for row in overlaps]).cpu()
        return torch.stack(maps).to(images.device)

    def _check_split(self, image: Tensor, logits: Tensor) -> None:
        assert self._parts is not None
        g, h = self._parts
        rebuilt = h(g(image))
        scale = float(logits.abs().max()) or 1.0
        if rebuilt.shape != logits.shape or float((rebuilt - logits).abs().max()) > 1e-4 * scale:
            raise ValueError(
                f"the model split at layer {self.layer!r} does not reproduce its logits on these images; "
                "the model may have data-dependent control flow that tracing froze: choose another layer="
            )

    def _overlaps(
        self, image: Tensor, target: int, classes: int, cells: Tensor, generator: torch.Generator
    ) -> Tensor:
        """``(R + 1,)``: the overlap of ``B`` (row 0), then of each ``B_u``."""
        if self.bounds == "empirical":
            return self._empirical_overlaps(image, target, cells, generator)
        with torch.no_grad():
            return self._verified_overlaps(image, target, classes, cells, generator)

    def _verified_overlaps(
        self, image: Tensor, target: int, classes: int, cells: Tensor, generator: torch.Generator
    ) -> Tensor:
        spec = _specification(classes, target, self.adversarial_class).to(image)
        sets = self.grid_size**2 + 1
        if self.bounds == "hybrid":
            assert self._parts is not None  # set by the constructor in this mode
            lower, upper = self._sampled_boxes(image, cells, generator)
            return self._verified(self._parts[1], lambda rows: (lower[rows], upper[rows]), sets, spec, target)
        epsilon = self.epsilon

        def ball(rows: slice) -> tuple[Tensor, Tensor]:
            radius = epsilon * self._free(cells, rows)[:, None]  # (B, 1, H, W): every channel
            low, high = image - radius, image + radius
            return (low.clamp(0, 1), high.clamp(0, 1)) if self.clip else (low, high)

        return self._verified(self.model, ball, sets, spec, target)

    def _free(self, cells: Tensor, rows: slice) -> Tensor:
        """``(B, H, W)``: 1 where each set of ``rows`` lets a pixel move (set 0: all; set j: not cell j-1)."""
        fixed = torch.arange(rows.start, rows.stop, device=cells.device) - 1  # set 0 fixes cell −1: none
        return (cells[None] != fixed[:, None, None]).to(torch.float32)

    def _verified(
        self,
        network: nn.Module,
        boxes: Callable[[slice], tuple[Tensor, Tensor]],
        sets: int,
        spec: Tensor,
        target: int,
    ) -> Tensor:
        """The verified overlap of ``network`` over each input box, ``boxes(rows)`` a batch of them."""
        bound = self._bound_function(network)
        overlaps = []
        for rows in iter_batches(sets, self.batch_size):
            lower, upper = boxes(rows)
            if self.form == "margin":
                specs = spec.expand(lower.shape[0], *spec.shape)
                _, upper_margins = bound(lower, upper, specs)
                overlaps.append(upper_margins.amax(dim=1))
            else:
                logits_lower, logits_upper = bound(lower, upper, None)
                others = spec.argmax(dim=1)  # the +1 of each row: the classes c′
                overlaps.append(logits_upper[:, others].amax(dim=1) - logits_lower[:, target])
        return torch.cat(overlaps)

    def _bound_function(self, network: nn.Module) -> BoundFn:
        method = "crown" if self.bounds == "crown" else "ibp"

        def bound(lower: Tensor, upper: Tensor, spec: Tensor | None) -> tuple[Tensor, Tensor]:
            try:
                if method == "crown":
                    return bound_propagation.linear_bounds(network, lower, upper, spec)
                return bound_propagation.interval_bounds(network, lower, upper, spec=spec)
            except bound_propagation.UnsupportedOperationError as error:
                hint = (
                    " With bounds='hybrid', only the part of the network after layer= is bounded."
                    if self.bounds in _VERIFIED
                    else " Choose a later layer=."
                )
                raise bound_propagation.UnsupportedOperationError(
                    f"EVA cannot bound the model: {error}.{hint}"
                ) from error
            except ValueError as error:
                if method != "crown":
                    raise
                raise ValueError(
                    f"EVA could not bound the model with CROWN: {error}. bounds='hybrid' bounds only the "
                    "classifier over sampled features (not guaranteed); bounds='ibp' is verified and cheap "
                    "but loose on deep networks"
                ) from error

        return bound

    def _sampled_boxes(
        self, image: Tensor, cells: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Per set, the per-coordinate min and max of ``g(x + δ)`` over δ = 0 and the draws."""
        assert self._parts is not None  # set by the constructor in this mode
        g = self._parts[0]
        draws = (torch.rand((self.nb_samples, *image.shape), generator=generator) * 2 - 1) * self.epsilon
        deltas = torch.cat([torch.zeros_like(draws[:1]), draws]).to(image)
        per_set = deltas.shape[0]
        sets = self.grid_size**2 + 1
        lower: Tensor | None = None
        upper: Tensor | None = None
        free = self._free(cells, slice(0, sets))
        with torch.no_grad():
            for rows in iter_batches(sets * per_set, self.batch_size):
                index = torch.arange(rows.start, rows.stop, device=image.device)
                set_of_row, draw_of_row = index // per_set, index % per_set
                inputs = image + deltas[draw_of_row] * free[set_of_row, None]
                features = g(inputs.clamp(0, 1) if self.clip else inputs)
                if lower is None or upper is None:
                    lower = torch.full((sets, *features.shape[1:]), torch.inf, device=features.device)
                    upper = torch.full((sets, *features.shape[1:]), -torch.inf, device=features.device)
                for each in set_of_row.unique().tolist():
                    rows_of_set = features[set_of_row == each]
                    lower[each] = torch.minimum(lower[each], rows_of_set.amin(dim=0))
                    upper[each] = torch.maximum(upper[each], rows_of_set.amax(dim=0))
        assert lower is not None and upper is not None  # sets * per_set >= 2 rows
        return lower, upper

    def _empirical_overlaps(
        self, image: Tensor, target: int, cells: Tensor, generator: torch.Generator
    ) -> Tensor:
        """PGD's best margin in ``B`` and each ``B_u``: lower bounds of the overlaps."""
        sets = self.grid_size**2 + 1
        start = ((torch.rand(image.shape, generator=generator) * 2 - 1) * self.epsilon).to(image)
        step = 2.5 * self.epsilon / self.pgd_steps
        objective = _margin_objective(self.adversarial_class)
        best = []
        for rows in iter_batches(sets, self.batch_size):
            free = self._free(cells, rows)[:, None]
            delta = start * free
            labels = torch.full((delta.shape[0],), target, dtype=torch.long, device=image.device)
            found = torch.full((delta.shape[0],), -torch.inf, device=image.device)
            for _ in range(self.pgd_steps):
                inputs = image + delta
                gradient, margin = input_gradients(
                    self.model,
                    inputs.clamp(0, 1) if self.clip else inputs,
                    labels,
                    objective=objective,
                    return_scores=True,
                )
                found = torch.maximum(found, margin.detach())
                delta = (delta + step * gradient.sign()).clamp(-self.epsilon, self.epsilon) * free
            with torch.no_grad():
                inputs = image + delta
                found = torch.maximum(
                    found, objective(self.model, inputs.clamp(0, 1) if self.clip else inputs, labels)
                )
            best.append(found)
        return torch.cat(best)


def _margin_objective(adversary: int | None) -> Callable[[nn.Module, Tensor, Tensor], Tensor]:
    """``max_{c′ ≠ c} f_{c′} − f_c`` (or ``f_{adversary} − f_c``) per image: what PGD climbs."""

    def margin(model: nn.Module, images: Tensor, targets: Tensor) -> Tensor:
        logits = model(images)
        own = logits.gather(1, targets.view(-1, 1)).squeeze(1)
        if adversary is not None:
            return logits[:, adversary] - own
        others = logits.scatter(1, targets.view(-1, 1), -torch.inf)
        return others.amax(dim=1) - own

    return margin
