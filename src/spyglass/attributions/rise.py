"""RISE (Petsiuk, Das & Saenko, 2018): the score-weighted average of random smooth masks.

Why our own: the method is the point of the library. Here its masks are generated one batch
at a time from a seed and streamed through the perturbation engine, so memory is bounded by
``batch_size`` (the reference implementation holds all ``N`` full-resolution masks) and the
maps do not depend on ``batch_size``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spyglass.attributions._base import Attribution, levels
from spyglass.attributions._perturbations import default_fill
from spyglass.attributions._registry import register
from spyglass.engines.forward import iter_batches
from spyglass.engines.perturbation import inpainting, perturbation_scores
from spyglass.objectives import Objective, target_logit
from spyglass.validation import check_int, check_seed

__all__ = ["RISE", "rise_average", "rise_masks"]


def rise_masks(
    nb_samples: int, shape: tuple[int, ...], keep_probability: float, generator: torch.Generator
) -> Tensor:
    """``nb_samples`` binary masks of ``shape``, each entry kept (``True``) with ``keep_probability``.

    The draw of RISE in both spaces: the cells of the low-resolution grids in pixel space
    (``shape = (s, s)``, then upsampled), one entry per concept in concept space
    (``shape = (r,)``, the same at every position). Mask ``k`` is the ``k``-th block of
    ``prod(shape)`` uniforms of ``generator``.
    """
    return torch.rand((nb_samples, *shape), generator=generator) < keep_probability


def rise_average(blocks: Iterable[tuple[Tensor, Tensor]], nb_samples: int, keep_probability: float) -> Tensor:
    r"""RISE's reduction :math:`\phi = \frac{1}{N p} \sum_k f_k\, M_k`, summed block by block.

    ``blocks`` yields ``(scores (B, K), masks (K, D))`` for consecutive slices of the
    ``N = nb_samples`` masks (flattened to ``D`` features: pixels or concepts), so that the
    masks can be rebuilt one batch at a time; the result is ``(B, D)``, in the dtype and on
    the device of the blocks. Dividing by the expected count ``N p`` (and not by each
    feature's drawn count) is the paper's estimator: :math:`\mathbb{E}[\phi_i] =
    \mathbb{E}[f \mid M_i = 1]` for binary masks.
    """
    total: Tensor | None = None
    for scores, masks in blocks:
        product = scores @ masks
        total = product if total is None else total + product
    if total is None:
        raise ValueError("rise_average needs at least one block of scores and masks")
    return total / (nb_samples * keep_probability)


class _RandomMasks:
    """Mask ``j``: grid ``j`` upsampled bilinearly to ``(s + 1)`` cells and cropped at shift ``j``.

    The low-resolution grids ``(M, s, s)`` and the shifts ``(M, 2)`` are drawn once (they are
    tiny); each batch of full-resolution masks ``(B, 1, H, W)`` is built on demand, so mask
    ``j`` is the same whatever slice it is built in.
    """

    def __init__(self, grids: Tensor, shifts: Tensor, size: tuple[int, int], cell: tuple[int, int]) -> None:
        self.grids, self.shifts, self.size = grids, shifts, size
        self.upsampled = ((grids.shape[1] + 1) * cell[0], (grids.shape[2] + 1) * cell[1])

    def __len__(self) -> int:
        return int(self.grids.shape[0])

    def __getitem__(self, rows: slice) -> Tensor:
        start, stop, _ = rows.indices(len(self))
        low = self.grids[start:stop].unsqueeze(1).to(torch.float32)
        smooth = F.interpolate(low, size=self.upsampled, mode="bilinear", align_corners=False)
        height, width = self.size
        crops = [
            smooth[k, :, top : top + height, left : left + width]
            for k, (top, left) in enumerate(self.shifts[start:stop].tolist())
        ]
        return torch.stack(crops).clamp_(0.0, 1.0)  # bilinear weights can overshoot 1 by an ulp


@register("rise")
class RISE(Attribution):
    r"""RISE: the average of random masks, each weighted by the score of the image it keeps.

    Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
    Models", BMVC 2018. Each mask ``M_j`` is a random binary ``s × s`` grid (a cell is kept
    with probability ``p``), upsampled bilinearly to ``(s + 1)`` cells of ``⌈H/s⌉ × ⌈W/s⌉``
    pixels and cropped to ``H × W`` at a random shift of less than one cell. With ``N``
    masks, and masked-out pixels filled with the model's mean colour:

    .. math:: \phi(x)_{ij} = \frac{1}{N\,p} \sum_{k=1}^{N} f_y(x \odot M_k + (1 - M_k)\,v)\,
              M_k(i, j)

    a Monte Carlo estimate of :math:`\mathbb{E}[f_y(x \odot M) \mid M(i, j) = 1]`, the
    expected score when pixel ``(i, j)`` is kept (the normalisation by ``N p`` uses
    :math:`\mathbb{E}[M(i, j)] = p`). Maps are in the units of the objective and do not sum
    to anything in particular.

    Cost: ``nb_samples`` forward passes per image (4000 by default). The masks are shared
    by all images and regenerated from ``seed`` on every call. The draw (:func:`rise_masks`)
    and the reduction (:func:`rise_average`) are those of concept-space RISE too.

    Parameters
    ----------
    nb_samples
        ``N``, the number of masks. The paper used 4000 (VGG16) to 8000 (ResNet-50); 4000
        keeps the Monte Carlo noise well below the structure of the map at ``s = 7``.
    grid_size
        ``s``, cells per side of the binary grid (the paper: 7).
    keep_probability
        ``p``, the probability that a cell is kept (the paper: 0.5), in (0, 1].
    seed
        Seeds the grids and shifts; the same seed gives the same maps at any ``batch_size``.

    Notes
    -----
    The fill ``v`` is the colour the model normalises to zero (its ``mean``; 0.5 for a model
    without one): the reference implementation multiplies the *normalised* image by the
    masks. It explains the softmax probability; pass
    ``objective=spyglass.objectives.target_probability`` to do the same (the default here,
    as everywhere in spyglass, is the target logit).

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, models
    >>> rise = attributions.RISE(models.load(), nb_samples=64, batch_size=16)
    >>> rise(torch.rand(1, 3, 224, 224), 967).shape
    torch.Size([1, 224, 224])
    """

    kind = "black-box"
    settings = levels(
        cheap={"nb_samples": 64, "grid_size": 4}, quick={"nb_samples": 64}, demo={"nb_samples": 400}
    )
    truth_check_exempt = (
        "a Monte Carlo average of smooth masks shifted at random: a pixel's score spreads over "
        "about two grid cells, and at the 64 masks of its cheap settings the sampling noise is "
        "the size of the 8 px block; tests/attributions/test_perturbation_methods.py checks that "
        "it finds a block at 3,000 masks"
    )

    def __init__(
        self,
        model: nn.Module,
        *,
        nb_samples: int = 4000,
        grid_size: int = 7,
        keep_probability: float = 0.5,
        seed: int = 0,
        objective: Objective = target_logit,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, objective=objective, batch_size=batch_size, progress=progress)
        check_int(nb_samples, "nb_samples", 1)
        check_int(grid_size, "grid_size", 1, hint="cells per side")
        if (
            isinstance(keep_probability, bool)
            or not isinstance(keep_probability, (int, float))
            or not 0 < keep_probability <= 1
        ):
            raise ValueError(f"keep_probability must be a float in (0, 1]; got {keep_probability!r}")
        check_seed(seed)
        self.nb_samples, self.grid_size = nb_samples, grid_size
        self.keep_probability, self.seed = float(keep_probability), seed
        self.value = default_fill(model)

    def _masks(self, size: tuple[int, int]) -> _RandomMasks:
        """The ``nb_samples`` masks for images of ``size`` ``(H, W)``, built batch by batch."""
        height, width = size
        if self.grid_size > min(height, width):
            raise ValueError(f"grid_size={self.grid_size} exceeds the images' size {height}×{width}")
        cell = (math.ceil(height / self.grid_size), math.ceil(width / self.grid_size))
        generator = torch.Generator().manual_seed(self.seed)
        grids = rise_masks(
            self.nb_samples, (self.grid_size, self.grid_size), self.keep_probability, generator
        )
        tops = torch.randint(0, cell[0], (self.nb_samples,), generator=generator)
        lefts = torch.randint(0, cell[1], (self.nb_samples,), generator=generator)
        return _RandomMasks(grids, torch.stack([tops, lefts], dim=1), (height, width), cell)

    def explain(self, images: Tensor, targets: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        masks = self._masks((height, width))
        scores = perturbation_scores(
            self.model,
            images,
            targets,
            masks,
            perturbation=inpainting(self.value),
            objective=self.objective,
            batch_size=self.batch_size,
            progress=self.progress,
            desc=self.name,
        ).detach()
        # Σ_k f_k M_k, rebuilding the masks batch by batch rather than holding all N of them.
        blocks = (
            (
                scores[:, rows].to(images.device, torch.float32),
                masks[rows].to(images.device).reshape(-1, height * width),
            )
            for rows in iter_batches(len(masks), self.batch_size)
        )
        return rise_average(blocks, self.nb_samples, self.keep_probability).reshape(-1, height, width)
