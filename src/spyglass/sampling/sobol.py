"""Total-order Sobol' indices: the estimators behind Sobol' attribution and concept importance.

Write the variance of a function of independent inputs, ``V = Var(f(X))``, as the sum of the
parts due to each input alone and to each group of interacting inputs (Sobol', 1993). The
*total-order* index of input ``i`` is the share of ``V`` in which ``x_i`` takes part, alone
or through any interaction:

    S_Ti = E[Var(f | X_~i)] / V = 1 − Var(E[f | X_~i]) / V,

where ``X_~i`` is every input but ``x_i``. ``S_Ti = 0`` exactly when ``f`` does not depend on
``x_i``; the ``S_Ti`` sum to at least 1 (more when inputs interact). The Sobol' attribution
method (Fel et al., "Look at the Variance! Efficient Black-box Explanations with
Sobol-based Sensitivity Analysis", NeurIPS 2021) takes the inputs to be the cells of a
low-resolution mask over an image and ``f`` the model's score on the masked image; CRAFT
takes them to be concept coefficients.

The estimators read the scores ``f`` on the design ``[A; B; C_1; …; C_d]`` of
:mod:`spyglass.sampling.designs` (``N`` rows each, ``C_i`` = ``A`` with column ``i`` from
``B``), passed as one vector of ``N·(d+2)`` scores in that order.

Why not SALib: here the estimators *are* the method, so they live beside it, are tested on
analytic cases and follow its tensors. SALib works on numpy arrays and expects the whole
vector of model outputs up front; spyglass draws the design first, lets the perturbation
engine stream it through a model batch by batch on any device, and only then reduces the
scores, which this split (design, scores, estimator) makes possible.

Examples
--------
A linear function ``f(x) = x_0 + 2 x_1`` of three uniform inputs, the last one unused: its
total indices are ``w_i² / Σ w_j² = (0.2, 0.8, 0)``.

>>> import torch
>>> from spyglass.sampling import sobol_total_indices
>>> weights = torch.tensor([1.0, 2.0, 0.0])
>>> indices = sobol_total_indices(lambda x: x @ weights, nb_dims=3, nb_design=1024)
>>> [round(value, 2) for value in indices.tolist()]
[0.2, 0.8, 0.0]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from spyglass.sampling.designs import (
    check_design_size,
    check_pairing,
    check_sampler,
    sensitivity_design,
)
from spyglass.validation import check_int, check_seed

__all__ = ["ESTIMATORS", "sobol_total_indices", "split_scores", "total_order_indices"]

ESTIMATORS: tuple[str, ...] = ("jansen", "saltelli", "homma", "janon", "glen")
"""Names accepted by ``estimator``, in :func:`total_order_indices`'s docstring order."""


def check_estimator(estimator: object) -> str:
    """Return ``estimator`` if it names one of :data:`ESTIMATORS`."""
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}; got {estimator!r}")
    return estimator


def split_scores(scores: Tensor, nb_dims: int, nb_design: int) -> tuple[Tensor, Tensor, Tensor]:
    """Cut the scores of a design ``[A; B; C_1; …; C_d]`` into ``f(A)``, ``f(B)`` and ``f(C)``.

    Parameters
    ----------
    scores
        ``(nb_design * (nb_dims + 2),)``, in the row order of the design.
    nb_dims, nb_design
        ``d`` and ``N``.

    Returns
    -------
    tuple of Tensor
        ``f(A)`` and ``f(B)`` of shape ``(N,)``, and ``f(C)`` of shape ``(d, N)`` whose row
        ``i`` is ``f(C_i)``. Views of ``scores``, not copies.

    Raises
    ------
    TypeError
        If ``scores`` is not a real-valued tensor.
    ValueError
        If its shape does not match the design, or a score is NaN or infinite.
    """
    nb_dims = check_int(nb_dims, "nb_dims", 1)
    nb_design = check_int(nb_design, "nb_design", 2)
    rows = nb_design * (nb_dims + 2)
    expected = (
        f"scores must be a real tensor of shape ({rows},) = nb_design * (nb_dims + 2) "
        f"for nb_design={nb_design}, nb_dims={nb_dims}"
    )
    if not isinstance(scores, Tensor):
        raise TypeError(f"{expected}; got {type(scores).__name__}")
    if scores.is_complex() or scores.dtype == torch.bool:
        raise TypeError(f"{expected}; got dtype {scores.dtype}")
    if tuple(scores.shape) != (rows,):
        raise ValueError(f"{expected}; got shape {tuple(scores.shape)}")
    finite = torch.isfinite(scores)
    if not bool(finite.all()):
        raise ValueError(f"{expected}; got {int((~finite).sum())} NaN or infinite score(s)")
    f_a = scores[:nb_design]
    f_b = scores[nb_design : 2 * nb_design]
    f_c = scores[2 * nb_design :].reshape(nb_dims, nb_design)
    return f_a, f_b, f_c


def _ratio(numerator: Tensor, denominator: Tensor, if_zero: float) -> Tensor:
    """``numerator / denominator``, with ``if_zero`` where the denominator is 0 (no variance)."""
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.full_like(numerator, if_zero))


def _jansen(f_a: Tensor, f_b: Tensor, f_c: Tensor, variance: Tensor) -> Tensor:
    return _ratio((f_a - f_c).square().mean(dim=1) / 2, variance, 0.0)


def _saltelli(f_a: Tensor, f_b: Tensor, f_c: Tensor, variance: Tensor) -> Tensor:
    return _ratio((f_a * (f_a - f_c)).mean(dim=1), variance, 0.0)


def _homma(f_a: Tensor, f_b: Tensor, f_c: Tensor, variance: Tensor) -> Tensor:
    mean = torch.cat([f_a, f_b]).mean()
    return _ratio(variance - (f_a * f_c).mean(dim=1) + mean.square(), variance, 0.0)


def _janon(f_a: Tensor, f_b: Tensor, f_c: Tensor, variance: Tensor) -> Tensor:
    pair_mean = ((f_a + f_c) / 2).mean(dim=1)
    covariance = (f_a * f_c).mean(dim=1) - pair_mean.square()
    pair_variance = ((f_a.square() + f_c.square()) / 2).mean(dim=1) - pair_mean.square()
    # Both members of a pair equal and constant: X_~i explains all there is, S_Ti = 0.
    return 1.0 - _ratio(covariance, pair_variance, 1.0)


def _glen(f_a: Tensor, f_b: Tensor, f_c: Tensor, variance: Tensor) -> Tensor:
    centred_a = f_a - f_a.mean()
    centred_c = f_c - f_c.mean(dim=1, keepdim=True)
    covariance = (centred_a * centred_c).sum(dim=1)
    scale = torch.sqrt(centred_a.square().sum() * centred_c.square().sum(dim=1))
    return 1.0 - _ratio(covariance, scale, 1.0)


_ESTIMATOR_FUNCTIONS: dict[str, Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]] = {
    "jansen": _jansen,
    "saltelli": _saltelli,
    "homma": _homma,
    "janon": _janon,
    "glen": _glen,
}


def total_order_indices(scores: Tensor, nb_dims: int, nb_design: int, estimator: str = "jansen") -> Tensor:
    r"""Estimate the total-order Sobol' indices from the scores of a pick-freeze design.

    Notation: ``N`` = ``nb_design``; ``f(A)``, ``f(B)``, ``f(C_i)`` the scores of the blocks of
    the design (``C_i`` = ``A`` with column ``i`` from ``B``, so ``C_i`` and ``A`` share every
    input but ``x_i``); sums run over the ``N`` rows; ``V`` is the unbiased sample variance
    (divisor ``2N − 1``) of the ``2N`` scores ``f(A)`` and ``f(B)`` together, and ``f0`` their
    mean.

    - ``"jansen"`` (Jansen, 1999; recommended by Saltelli et al., 2010, and the default of
      Fel et al., 2021): ``S_Ti = (1/2N) Σ (f(A) − f(C_i))² / V``.
    - ``"saltelli"`` (Saltelli et al., 2010, Table 2 (b), the form of Sobol', 2007):
      ``S_Ti = (1/N) Σ f(A) (f(A) − f(C_i)) / V``.
    - ``"homma"`` (Homma & Saltelli, 1996): ``S_Ti = (V − (1/N) Σ f(A) f(C_i) + f0²) / V``.
      It subtracts two large numbers when ``|f0|`` is large against ``√V``, hence a noisy
      estimate for functions far from zero mean.
    - ``"janon"`` (Janon, Klein, Lagnoux, Nodet & Prieur, 2014, eq. 2.8 of the ESAIM
      version, applied to the pair ``(f(A), f(C_i))`` that shares ``X_~i``):
      ``S_Ti = 1 − [(1/N) Σ f(A) f(C_i) − m_i²] / [(1/N) Σ (f(A)² + f(C_i)²)/2 − m_i²]``
      with ``m_i = (1/N) Σ (f(A) + f(C_i))/2``: mean and variance are taken over both
      members of the pair, not from ``V``.
    - ``"glen"`` (Glen & Isaacs, 2012, the correlation estimator of the total effect):
      ``S_Ti = 1 − ρ(f(A), f(C_i))``, with ``ρ`` the sample Pearson correlation (each vector
      centred and scaled by its own mean and standard deviation); does not use ``V``.

    Every estimator has expectation ``S_Ti`` (the last two up to ``O(1/N)``) and can stray
    a little outside ``[0, 1]`` on small designs; no clipping is applied. A function constant
    over the design (``V = 0``) has no variance to share: every index is then ``0``.

    Parameters
    ----------
    scores
        ``(nb_design * (nb_dims + 2),)`` real scores in the row order ``[A; B; C_1; …; C_d]``
        of :func:`~spyglass.sampling.designs.pick_freeze_design`; any device and real dtype.
    nb_dims
        ``d``, the number of inputs.
    nb_design
        ``N``, the rows of each block.
    estimator
        One of :data:`ESTIMATORS`.

    Returns
    -------
    Tensor
        ``float32`` ``(nb_dims,)``, on the device of ``scores``. The arithmetic runs in
        ``float64`` on the CPU (the score vectors are small; some devices lack ``float64``).

    Raises
    ------
    TypeError
        If ``scores`` is not a real tensor, or ``nb_dims``/``nb_design`` are not ints.
    ValueError
        On an unknown estimator, a shape that does not match the design, or a non-finite score.
    """
    estimator = check_estimator(estimator)
    f_a, f_b, f_c = split_scores(scores, nb_dims, nb_design)
    f_a, f_b, f_c = (t.detach().to("cpu", torch.float64) for t in (f_a, f_b, f_c))
    variance = torch.cat([f_a, f_b]).var(correction=1)
    indices = _ESTIMATOR_FUNCTIONS[estimator](f_a, f_b, f_c, variance)
    if not bool(variance > 0):
        indices = torch.zeros_like(indices)
    return indices.to(device=scores.device, dtype=torch.float32)


def _evaluate(func: Callable[[Tensor], Tensor], design: Tensor, batch_size: int | None) -> Tensor:
    """``func`` on every row of ``design`` (in chunks of ``batch_size`` rows), checked and concatenated."""
    step = design.shape[0] if batch_size is None else batch_size
    outputs: list[Tensor] = []
    with torch.no_grad():
        for start in range(0, design.shape[0], step):
            chunk = design[start : start + step]
            out = func(chunk)
            expected = f"func must return a real tensor of shape ({chunk.shape[0]},), one score per row"
            if not isinstance(out, Tensor):
                raise TypeError(f"{expected}; got {type(out).__name__}")
            if out.is_complex() or out.dtype == torch.bool:
                raise TypeError(f"{expected}; got dtype {out.dtype}")
            if tuple(out.shape) != (chunk.shape[0],):
                hint = " (squeeze the last dimension)" if out.shape == (chunk.shape[0], 1) else ""
                raise ValueError(f"{expected}; got shape {tuple(out.shape)}{hint}")
            finite = torch.isfinite(out)
            if not bool(finite.all()):
                first = start + int((~finite).nonzero()[0, 0])
                raise ValueError(
                    f"func must return finite scores; got {int((~finite).sum())} NaN or infinite "
                    f"score(s), the first at design row {first}"
                )
            outputs.append(out.detach().to("cpu", torch.float64))
    return torch.cat(outputs)


def sobol_total_indices(
    func: Callable[[Tensor], Tensor],
    nb_dims: int,
    nb_design: int = 32,
    estimator: str = "jansen",
    sampler: str = "sobol",
    seed: int = 0,
    batch_size: int | None = None,
    pairing: str = "matched",
) -> Tensor:
    """Total-order Sobol' indices of ``func`` over independent uniform inputs in ``[0, 1]^d``.

    Builds the design ``[A; B; C_1; …; C_d]`` (:func:`~spyglass.sampling.designs.sensitivity_design`),
    evaluates ``func`` on its ``nb_design * (nb_dims + 2)`` rows and reduces the scores with
    :func:`total_order_indices`.

    Parameters
    ----------
    func
        Maps a ``float32`` CPU tensor ``(M, nb_dims)`` of points in ``[0, 1]`` to ``(M,)``
        real, finite scores. Called under :func:`torch.no_grad`.
    nb_dims
        ``d >= 1``, the number of inputs.
    nb_design
        ``N >= 2``, the base sample size; a power of two for ``sampler="sobol"``. 32 is the
        default of the Sobol' attribution method (Fel et al., 2021).
    estimator
        One of :data:`ESTIMATORS`; see :func:`total_order_indices` for the formulas.
    sampler
        One of :data:`~spyglass.sampling.designs.SAMPLERS`.
    seed
        Seed of the sampler (an int >= 0); the same seed gives the same indices.
    batch_size
        Rows per call of ``func``; ``None`` evaluates the whole design in one call. The
        result does not depend on it (for a ``func`` that treats rows independently).
    pairing
        One of :data:`~spyglass.sampling.designs.PAIRINGS`: how ``B``'s columns are paired
        with ``A``'s (see :func:`~spyglass.sampling.designs.sensitivity_design`).

    Returns
    -------
    Tensor
        ``float32`` ``(nb_dims,)`` on the CPU.

    Raises
    ------
    TypeError
        If ``func`` is not callable, an integer argument is not an int, or ``func`` returns
        something other than a real tensor.
    ValueError
        On an unknown estimator, sampler or pairing (the message lists the valid ones), ``nb_dims < 1``,
        ``nb_design < 2`` or not a power of two with ``"sobol"``, a negative seed,
        ``batch_size < 1``, or ``func`` returning the wrong shape or a NaN/infinite score.

    Examples
    --------
    >>> import torch
    >>> indices = sobol_total_indices(lambda x: x[:, 0] * x[:, 1], nb_dims=2, nb_design=256)
    >>> indices.shape, indices.dtype
    (torch.Size([2]), torch.float32)
    """
    if not callable(func):
        raise TypeError(f"func must be callable, (M, nb_dims) -> (M,); got {type(func).__name__}")
    estimator = check_estimator(estimator)
    sampler = check_sampler(sampler)
    nb_dims = check_int(nb_dims, "nb_dims", 1)
    nb_design = check_design_size(sampler, nb_design)
    seed = check_seed(seed)
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", 1)
    design = sensitivity_design(nb_dims, nb_design, sampler, seed, pairing=check_pairing(pairing))
    scores = _evaluate(func, design, batch_size)
    return total_order_indices(scores, nb_dims, nb_design, estimator)
