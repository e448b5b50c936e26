"""HSIC attribution (Novello, Fel & Vigouroux, NeurIPS 2022).

Each image is cut into a ``grid_size × grid_size`` grid; a design of ``nb_design`` random
masks switches every cell on or off; the perturbation engine scores the image under every
mask; and the importance of cell ``i`` is the Hilbert–Schmidt independence criterion
between its mask variable and the model's score, estimated from those samples.

We write it ourselves rather than wrap a peer: xplique's implementation (the authors'
reference) is TensorFlow, captum has no HSIC, and peers are test-only here anyway. The
estimator is a few lines of linear algebra; what matters is that the masks go through
spyglass's own perturbation engine (batching, memory bound, objectives) like every other
black-box method.

Two choices differ from the reference code and are made on purpose:

- The output kernel's bandwidth is the *median heuristic* of Gretton et al. (the median of
  the pairwise distances ``|y_a - y_b|``), where the reference uses the median of the
  outputs themselves; ours does not change when a constant is added to the objective, and
  does not collapse when the median score is near zero. Zero distances (tied outputs) are
  left out of the median, so a model with few distinct outputs keeps a usable bandwidth.
- The estimator is the biased V-statistic normalised by ``(n - 1)²`` (Gretton et al., 2005)
  where the reference divides by ``n``: a constant factor, so maps are proportional.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._perturbations import resolve_perturbation
from spyglass.attributions._registry import register
from spyglass.engines.grid import upsample_cells
from spyglass.engines.perturbation import Perturbation, UpsampledMasks, perturbation_scores
from spyglass.objectives import Objective, target_logit
from spyglass.sampling.designs import check_design_size, check_sampler, sample
from spyglass.validation import check_int, check_seed

__all__ = ["KERNELS", "HsicAttribution", "hsic_design", "hsic_indices"]

KERNELS: tuple[str, ...] = ("binary", "rbf")
"""Kernels on the mask variables: the Dirac kernel on binary masks, or an RBF on continuous ones."""

InputKernel = Literal["binary", "rbf"]

# Bandwidth of the RBF kernel on mask values in [0, 1] (the reference implementation's).
_MASK_BANDWIDTH = 0.5
# Regions per (regions, n, n) block of the RBF path: about 32 MiB of float64.
_BLOCK_ELEMENTS = 1 << 22


def _check_kernel(kernel: object) -> InputKernel:
    if kernel == "binary":
        return "binary"
    if kernel == "rbf":
        return "rbf"
    raise ValueError(f"kernel must be one of {', '.join(map(repr, KERNELS))}; got {kernel!r}")


def hsic_design(
    grid_size: int,
    nb_design: int,
    *,
    sampler: str = "lhs",
    kernel: str = "binary",
    seed: int = 0,
) -> Tensor:
    """The masks of an HSIC attribution: ``(nb_design, grid_size, grid_size)`` float32.

    A ``grid_size²``-dimensional sample of ``nb_design`` points from :func:`~spyglass.sampling.sample`
    (the first half of its columns), rounded to {0, 1} for the ``"binary"`` kernel and kept
    continuous in [0, 1] for ``"rbf"``. Rounding a Latin hypercube keeps every cell on in
    exactly half of the masks (for even ``nb_design``). Cell ``i`` is row ``i // grid_size``,
    column ``i % grid_size``; 1 keeps the cell.
    """
    grid_size = check_int(grid_size, "grid_size", 1)
    sampler = check_sampler(sampler)
    nb_design = check_design_size(sampler, nb_design)
    kernel = _check_kernel(kernel)
    nb_regions = grid_size * grid_size
    points = sample(sampler, nb_design, nb_regions, seed)[:, :nb_regions]
    if kernel == "binary":
        points = points.round()
    return points.reshape(nb_design, grid_size, grid_size).contiguous()


def _median(values: Tensor) -> Tensor:
    """The median of a 1-d tensor, averaging the two middle values (as numpy does)."""
    ordered = values.sort().values
    count = ordered.numel()
    return (ordered[(count - 1) // 2] + ordered[count // 2]) / 2


def hsic_indices(design: Tensor, outputs: Tensor, *, kernel: str = "binary") -> Tensor:
    r"""HSIC between each mask variable and the output: ``(d,)`` float64.

    .. math:: \widehat{\mathrm{HSIC}}_i = \frac{1}{(n-1)^2} \operatorname{tr}(K_i H L H),
              \quad L_{ab} = e^{-(y_a - y_b)^2 / 2\sigma^2},
              \quad H = I_n - \tfrac{1}{n} \mathbf{1}\mathbf{1}^\top

    with :math:`(K_i)_{ab} = \delta(x^a_i = x^b_i)` for ``"binary"`` and
    :math:`e^{-(x^a_i - x^b_i)^2 / 2 \cdot 0.5^2}` for ``"rbf"``, and :math:`\sigma` the
    median of the non-zero :math:`|y_a - y_b|`, :math:`a < b`.

    For the Dirac kernel on {0, 1} data, :math:`K_i = x_i x_i^\top + (1 - x_i)(1 - x_i)^\top`
    and :math:`\tilde L = HLH` has zero row and column sums, so the trace is
    :math:`2\, x_i^\top \tilde L x_i`: one ``(n, n) @ (n, d)`` product for all regions at once.
    The RBF kernel is computed in ``(regions, n, n)`` blocks.

    Parameters
    ----------
    design
        ``(n, ...)`` mask values, one row per sample, flattened to ``(n, d)``; {0, 1} for
        ``"binary"``.
    outputs
        ``(n,)`` model scores on those samples.
    kernel
        ``"binary"`` or ``"rbf"``.

    Returns
    -------
    Tensor
        ``(d,)`` indices, non-negative up to rounding (all zero when the output never changes).
    """
    kernel = _check_kernel(kernel)
    if not isinstance(design, Tensor) or not isinstance(outputs, Tensor):
        raise TypeError(
            f"design and outputs must be tensors; got {type(design).__name__} and {type(outputs).__name__}"
        )
    n = outputs.numel()
    if outputs.dim() != 1 or design.dim() < 2 or design.shape[0] != n or n < 2:
        raise ValueError(
            "design must be (n, ...) and outputs (n,) with the same n >= 2; "
            f"got {tuple(design.shape)} and {tuple(outputs.shape)}"
        )
    x = design.detach().reshape(n, -1).to(torch.float64)
    y = outputs.detach().to(x.device, torch.float64)
    if kernel == "binary" and not bool(((x == 0) | (x == 1)).all()):
        raise ValueError("kernel='binary' needs a design of 0s and 1s; use kernel='rbf' for continuous masks")
    gaps = y[:, None] - y[None, :]
    pairs = gaps.triu(diagonal=1).abs()
    distances = pairs[pairs > 0]
    if distances.numel() == 0:  # a constant output depends on nothing
        return torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    sigma = _median(distances)
    gram = torch.exp(-(gaps**2) / (2 * sigma**2))
    centred = gram - gram.mean(0, keepdim=True) - gram.mean(1, keepdim=True) + gram.mean()
    if kernel == "binary":
        traces = 2 * (x * (centred @ x)).sum(0)
    else:
        block = max(1, _BLOCK_ELEMENTS // (n * n))
        parts = []
        for start in range(0, x.shape[1], block):
            columns = x[:, start : start + block].T  # (regions, n)
            k = torch.exp(-((columns[:, :, None] - columns[:, None, :]) ** 2) / (2 * _MASK_BANDWIDTH**2))
            parts.append((k * centred).sum((1, 2)))
        traces = torch.cat(parts)
    return traces / (n - 1) ** 2


@register("hsic")
class HsicAttribution(Attribution):
    r"""HSIC attribution: how much the score depends on each cell of a grid.

    Novello, Fel & Vigouroux, "Making Sense of Dependence: Efficient Black-box Explanations
    Using Dependence Measure", NeurIPS 2022. With :math:`n` random masks :math:`x^a \in
    \{0, 1\}^{d}` over :math:`d` = ``grid_size²`` cells and the scores
    :math:`y_a = f(x \odot x^a)` of the perturbed image,

    .. math:: \phi_i = \frac{1}{(n-1)^2} \operatorname{tr}(K_i H L H)

    where :math:`K_i` is the kernel matrix of cell :math:`i`'s mask values, :math:`L` the
    RBF kernel matrix of the scores and :math:`H` the centring matrix (:func:`hsic_indices`).
    A cell's value is its index; the map is the grid upsampled (nearest) to the image.

    Cost: ``nb_design`` forward passes per image (the paper: 1,500 for its best maps,
    750 as a budget version); the estimator itself is negligible beside them.

    Parameters
    ----------
    grid_size
        Cells per side (the paper: 8 in its experiments, 7 in xplique's tips).
    nb_design
        ``n``, masks per image; a power of two with ``sampler="sobol"``.
    sampler
        ``"lhs"`` (Latin hypercube, the paper's), ``"sobol"``, ``"halton"`` or ``"random"``;
        the points are rounded to {0, 1} for the binary kernel.
    perturbation
        ``"inpainting"`` (removed cells take the model's normalisation mean, or 0.5),
        ``"blurring"`` (a σ = 10 px blur), or any :data:`~spyglass.engines.Perturbation`.
    kernel
        On the mask variables: ``"binary"``, the Dirac kernel on binary masks (the paper's
        choice), or ``"rbf"`` (bandwidth 0.5) on continuous masks in [0, 1].
    seed
        Seeds the design, shared by all images; the same seed gives the same maps at any
        ``batch_size``.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> hsic = attributions.HsicAttribution(models.load(), grid_size=4, nb_design=32)
    >>> hsic(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    kind = "black-box"
    settings = levels(cheap={"grid_size": 4, "nb_design": 32}, quick={"grid_size": 4, "nb_design": 32})

    def __init__(
        self,
        model: nn.Module,
        *,
        grid_size: int = 8,
        nb_design: int = 500,
        sampler: str = "lhs",
        perturbation: str | Perturbation = "inpainting",
        kernel: str = "binary",
        seed: int = 0,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        self.grid_size = check_int(grid_size, "grid_size", 1)
        self.sampler = check_sampler(sampler)
        self.nb_design = check_design_size(self.sampler, nb_design)
        self.kernel = _check_kernel(kernel)
        self.seed = check_seed(seed)
        self.perturbation = resolve_perturbation(perturbation, model)

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        if self.grid_size > min(height, width):
            raise ValueError(
                f"grid_size must be at most the image size so that every cell has pixels; "
                f"got grid_size={self.grid_size} for {height}×{width} images"
            )
        design = hsic_design(
            self.grid_size, self.nb_design, sampler=self.sampler, kernel=self.kernel, seed=self.seed
        )
        scores = perturbation_scores(
            self.model,
            images,
            targets,
            UpsampledMasks(design.to(images.device), (height, width), mode="nearest"),
            perturbation=self.perturbation,
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=self.name,
        )
        indices = torch.stack([hsic_indices(design, row.cpu(), kernel=self.kernel) for row in scores])
        grid = indices.reshape(-1, 1, self.grid_size, self.grid_size).to(images.device, torch.float32)
        return upsample_cells(grid, (height, width))[:, 0]  # the cells its masks hid

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(grid_size={self.grid_size}, nb_design={self.nb_design}, "
            f"sampler={self.sampler!r}, kernel={self.kernel!r}, batch_size={self.batch_size})"
        )
