"""Quasi-Monte Carlo designs for variance-based sensitivity analysis.

A total-order Sobol' index needs the function at three kinds of points, all in the unit
hypercube ``[0, 1]^d``:

- ``A`` and ``B``: two independent ``(N, d)`` samples of the inputs;
- ``C_i`` for ``i = 1 … d``: ``A`` with its column ``i`` taken from ``B`` (the "pick-freeze"
  matrix of Saltelli et al., 2010, written ``A_B^(i)`` there). ``C_i`` shares every input
  but ``x_i`` with ``A``, so ``f(A) − f(C_i)`` only moves through ``x_i`` and its interactions:
  that is what the total index measures.

The design stacks them row-wise::

    rows [0, N)                 A
    rows [N, 2N)                B
    rows [(2+i)N, (3+i)N)       C_i      for i = 0 … d-1 (0-based)

for ``N·(d+2)`` rows in all: the cost, in function evaluations, of the Sobol' attribution
method (Fel et al., 2021). ``A`` and ``B`` are cut from *one* ``2d``-dimensional QMC sample,
the standard construction that keeps the low-discrepancy properties of the joint sample
(Saltelli, 2002; Saltelli et al., 2010): ``A`` is its columns ``[0, d)`` and ``B`` its
columns ``[d, 2d)``, in an order chosen for them (``pairing``):

- ``"halves"`` (the textbook order, and the design of the paper's code and of xplique):
  ``b_i`` is column ``d + i``. With the Joe–Kuo direction numbers of scipy's Sobol'
  engine some pairs of columns ``(i, d + i)`` are strongly correlated in the first ``2^m``
  points: at ``d = 121`` (an 11 × 11 grid) columns 40, 57, 90, 102 and 105 correlate with
  their partner at ``|r|`` 0.64–0.81 for ``N`` = 32 and 64, and 40 and 105 still at
  ``N = 128``; at ``d = 10``, column 4 at ``N = 32``. Scrambling only flips the sign with
  the seed. ``f(A) − f(C_i)`` moves through ``a_i − b_i``, whose spread shrinks by
  ``1 − r``: the total index of such an input reads ``(1 − r)`` times its value for an
  additive effect (0.15–0.25 instead of 0.98 for a dominant input at those cells).
- ``"matched"`` (the default): the same ``d`` columns ``[d, 2d)``, re-paired with ``A``'s by
  a minimum-cost assignment (:func:`scipy.optimize.linear_sum_assignment`) on the measured
  ``|r(a_i, b_j)|⁸`` of the drawn points: the eighth power makes the assignment lower the
  largest correlation first. ``B`` is the same point set as with ``"halves"``, its columns
  in another order, so every projection of the design is still a projection of one
  scrambled Sobol' sample. Measured over 5 seeds at ``d`` = 1–50 and at the grids 8² to
  16², with ``N`` from 16 to 256, the largest ``|r(a_i, b_i)|`` is at most 0.19 (0.04 from
  ``N = 64``), against 0.99 for ``"halves"``; ``benchmarks/sobol.py`` gives its accuracy on
  analytic functions (at ``d = 121``, ``N = 32`` a dominant input reads at least 0.87 at
  every cell and every seed, against 0.15).

Other choices were measured and lost (``benchmarks/README.md``): a random row permutation
of ``B`` removes the structure but adds the error of random pairing at ``d ≤ 20``;
drawing ``B`` from a second, independently scrambled Sobol' sequence of the same ``d``
dimensions pairs each column with a scrambled copy of itself (``|r|`` up to 1); choosing
``B``'s columns from a wider pool (``[d, d + max(d, 16))``) lost accuracy on the Ishigami
function; pairing by the 2-D projections' t-value, or by a correlation that also counts
``|2x − 1|``, did no better than the linear correlation alone.

:func:`sensitivity_design` measures ``r(a_i, b_i)`` on the design it returns and warns
(:class:`CorrelatedDesignWarning`) when the largest ``|r|`` exceeds
:data:`CORRELATION_THRESHOLD`; ``report=True`` returns the measurement too
(:class:`DesignReport`).

Samplers come from :mod:`scipy.stats.qmc` (scrambled Sobol', scrambled Halton, Latin
hypercube) and from :func:`numpy.random.default_rng` (plain uniform); this module writes no
low-discrepancy sequence of its own.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from scipy.stats import qmc
from torch import Tensor

from spyglass.validation import check_int, check_seed

__all__ = [
    "CORRELATION_THRESHOLD",
    "PAIRINGS",
    "SAMPLERS",
    "CorrelatedDesignWarning",
    "DesignReport",
    "pair_correlations",
    "pick_freeze_design",
    "sample",
    "sensitivity_design",
]

SAMPLERS: tuple[str, ...] = ("sobol", "halton", "lhs", "random")
"""Names accepted by ``sampler``: scrambled Sobol', scrambled Halton, Latin hypercube, uniform."""

PAIRINGS: tuple[str, ...] = ("matched", "halves")
"""Names accepted by ``pairing``: which column of ``B`` goes with which of ``A`` (module docstring)."""

CORRELATION_THRESHOLD = 0.3
"""Largest ``|r(a_i, b_i)|`` :func:`sensitivity_design` accepts without a warning.

For an additive effect the index of input ``i`` reads ``(1 − r)`` times its value, so 0.3
is a bias of 30 %. The ``"matched"`` design stays under 0.19 from ``N = 16`` (measured over
5 seeds, ``d`` = 1–50 and 64–256); ``"halves"`` exceeds it at ``d = 121`` up to ``N = 256``.
At ``N = 8`` a few columns leave little to choose from: the matched design reaches 0.65 at
``d = 2`` and 0.36 at ``d = 5``, and below 8 points any pairing may exceed it (two points
correlate at ``±1``).
"""

# The power of |r| in the assignment's cost: high, so that lowering the largest correlation
# outweighs many small ones (0.8⁸ = 0.17 against 0.2⁸ = 2.6e-6).
_MATCH_POWER = 8


class CorrelatedDesignWarning(UserWarning):
    """A design's ``A`` and ``B`` columns correlate above :data:`CORRELATION_THRESHOLD`."""


@dataclass(frozen=True)
class DesignReport:
    """How the columns of ``B`` were paired with those of ``A``, and how they correlate.

    Attributes
    ----------
    pairing : str
        One of :data:`PAIRINGS`.
    columns : tuple of int
        ``columns[i]`` is the column of the base sample (``d`` to ``2d − 1``) that gives ``b_i``.
    correlations : Tensor
        ``float64`` ``(d,)``, the sample Pearson correlation ``r(a_i, b_i)`` of each pair.
    """

    pairing: str
    columns: tuple[int, ...]
    correlations: Tensor

    @property
    def max_correlation(self) -> float:
        """The largest ``|r(a_i, b_i)|``."""
        return float(self.correlations.abs().max())

    @property
    def worst_input(self) -> int:
        """The input ``i`` (0-based) of the largest ``|r(a_i, b_i)|``."""
        return int(self.correlations.abs().argmax())


# scipy 1.15 renamed the engines' ``seed`` keyword to ``rng``; a numpy Generator means the same
# thing under either name, so pass one under whichever name this scipy knows.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(qmc.Sobol).parameters else "seed"


def check_sampler(sampler: object) -> str:
    """Return ``sampler`` if it names one of :data:`SAMPLERS`."""
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}; got {sampler!r}")
    return sampler


def check_design_size(sampler: str, nb_design: object) -> int:
    """Return ``nb_design`` if it is an int >= 2, and a power of two for the Sobol' sampler."""
    size = check_int(nb_design, "nb_design", 2)
    if sampler == "sobol" and size & (size - 1) != 0:
        below = 1 << (size.bit_length() - 1)
        raise ValueError(
            "nb_design must be a power of two with sampler='sobol' (scrambled Sobol' points are "
            f"balanced only in blocks of 2^m); got {size}: use {below} or {2 * below}, or another "
            "sampler ('halton', 'lhs', 'random')"
        )
    return size


def check_pairing(pairing: object) -> str:
    """Return ``pairing`` if it names one of :data:`PAIRINGS`."""
    if not isinstance(pairing, str) or pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {', '.join(map(repr, PAIRINGS))}; got {pairing!r}")
    return pairing


def sample(sampler: str, nb_design: int, nb_dims: int, seed: int = 0) -> Tensor:
    """Draw the base sample from which the matrices ``A`` and ``B`` are cut.

    Parameters
    ----------
    sampler
        ``"sobol"`` (scrambled Sobol', Owen scrambling with a random digital shift),
        ``"halton"`` (scrambled Halton), ``"lhs"`` (Latin hypercube) or ``"random"``
        (independent uniform points).
    nb_design
        ``N``, the number of points; a power of two for ``"sobol"``.
    nb_dims
        ``d``, the number of inputs of the function studied.
    seed
        Seed of the scrambling (or of the points for ``"lhs"`` and ``"random"``); the same
        seed gives the same sample.

    Returns
    -------
    Tensor
        ``float32`` ``(nb_design, 2 * nb_dims)`` in ``[0, 1]``: one ``2d``-dimensional sample,
        whose columns ``[0, d)`` give ``A`` and ``[d, 2d)`` give ``B``.

    Raises
    ------
    ValueError
        On an unknown sampler, ``nb_design < 2`` (or not a power of two for ``"sobol"``),
        ``nb_dims < 1``, a negative seed, or more dimensions than scipy's Sobol' engine has.
    """
    sampler = check_sampler(sampler)
    nb_design = check_design_size(sampler, nb_design)
    nb_dims = check_int(nb_dims, "nb_dims", 1)
    seed = check_seed(seed)
    width = 2 * nb_dims
    generator = np.random.default_rng(seed)
    points: NDArray[np.float64]
    if sampler == "sobol":
        if width > qmc.Sobol.MAXDIM:
            raise ValueError(
                f"sampler='sobol' supports at most {qmc.Sobol.MAXDIM // 2} inputs (scipy's Sobol' "
                f"engine has {qmc.Sobol.MAXDIM} dimensions and the design needs 2 * nb_dims); "
                f"got nb_dims={nb_dims}: use sampler='halton', 'lhs' or 'random'"
            )
        engine = qmc.Sobol(width, scramble=True, **{_RNG_KEYWORD: generator})
        points = engine.random_base2(nb_design.bit_length() - 1)
    elif sampler == "halton":
        points = qmc.Halton(width, scramble=True, **{_RNG_KEYWORD: generator}).random(nb_design)
    elif sampler == "lhs":
        points = qmc.LatinHypercube(width, **{_RNG_KEYWORD: generator}).random(nb_design)
    else:
        points = generator.random((nb_design, width))
    return torch.from_numpy(points).to(torch.float32)


def pick_freeze_design(a: Tensor, b: Tensor) -> Tensor:
    """Stack ``[A; B; C_1; …; C_d]``, where ``C_i`` is ``A`` with its column ``i`` from ``B``.

    Parameters
    ----------
    a, b
        Two ``(N, d)`` tensors of the same shape, dtype and device.

    Returns
    -------
    Tensor
        ``(N * (d + 2), d)``; rows ``[0, N)`` are ``A``, ``[N, 2N)`` are ``B`` and rows
        ``[(2 + i) N, (3 + i) N)`` are ``C_i`` (0-based ``i``), as the module docstring lays out.

    Raises
    ------
    TypeError
        If ``a`` or ``b`` is not a tensor.
    ValueError
        If they are not 2-D with the same shape, dtype and device.
    """
    expected = "a and b must be tensors (N, d) of the same shape, dtype and device"
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{expected}; got {type(a).__name__} and {type(b).__name__}")
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{expected}; got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype or a.device != b.device:
        raise ValueError(f"{expected}; got {a.dtype} on {a.device} and {b.dtype} on {b.device}")
    nb_design, nb_dims = a.shape
    frozen = a.unsqueeze(0).repeat(nb_dims, 1, 1)  # (d, N, d): C_i = frozen[i]
    columns = torch.arange(nb_dims, device=a.device)
    frozen[columns, :, columns] = b.T
    return torch.cat([a, b, frozen.reshape(nb_dims * nb_design, nb_dims)], dim=0)


def _correlation_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``(d_a, d_b)`` float64 sample Pearson correlations of the columns of ``a`` with those of ``b``."""
    centred_a = a.double() - a.double().mean(dim=0)
    centred_b = b.double() - b.double().mean(dim=0)
    scale = centred_a.norm(dim=0)[:, None] * centred_b.norm(dim=0)[None, :]
    covariance = centred_a.T @ centred_b
    # A constant column (possible with N = 1 only, or a degenerate user matrix) correlates with nothing.
    return torch.where(scale > 0, covariance / torch.where(scale > 0, scale, 1.0), 0.0)


def pair_correlations(a: Tensor, b: Tensor) -> Tensor:
    """The sample Pearson correlation ``r(a_i, b_i)`` of each column of ``a`` with the same column of ``b``.

    Parameters
    ----------
    a, b
        ``(N, d)`` tensors of the same shape, e.g. the blocks ``A`` and ``B`` of a design
        (``design[:N]`` and ``design[N:2N]``).

    Returns
    -------
    Tensor
        ``float64`` ``(d,)`` on the CPU; 0 for a constant column.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[0.1, 0.2], [0.4, 0.8], [0.7, 0.5]])
    >>> b = torch.tensor([[0.7, 0.2], [0.4, 0.8], [0.1, 0.5]])  # column 0 reversed, column 1 the same
    >>> [round(r, 6) for r in pair_correlations(a, b).tolist()]
    [-1.0, 1.0]
    """
    expected = "a and b must be tensors (N, d) of the same shape"
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{expected}; got {type(a).__name__} and {type(b).__name__}")
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 2 or a.shape[1] == 0:
        raise ValueError(f"{expected}, N >= 2; got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
    centred_a, centred_b = a - a.mean(dim=0), b - b.mean(dim=0)
    scale = centred_a.norm(dim=0) * centred_b.norm(dim=0)
    covariance = (centred_a * centred_b).sum(dim=0)
    return torch.where(scale > 0, covariance / torch.where(scale > 0, scale, 1.0), 0.0)


def _matched_columns(a: Tensor, b: Tensor) -> NDArray[np.intp]:
    """The order of ``b``'s columns that minimises ``Σ |r(a_i, b_π(i))|⁸`` (a minimum-cost assignment)."""
    cost = _correlation_matrix(a, b).abs().pow(_MATCH_POWER).numpy()
    _, columns = linear_sum_assignment(cost)
    return columns


@overload
def sensitivity_design(
    nb_dims: int,
    nb_design: int = ...,
    sampler: str = ...,
    seed: int = ...,
    *,
    pairing: str = ...,
    report: Literal[False] = ...,
) -> Tensor: ...


@overload
def sensitivity_design(
    nb_dims: int,
    nb_design: int = ...,
    sampler: str = ...,
    seed: int = ...,
    *,
    pairing: str = ...,
    report: Literal[True],
) -> tuple[Tensor, DesignReport]: ...


def sensitivity_design(
    nb_dims: int,
    nb_design: int = 32,
    sampler: str = "sobol",
    seed: int = 0,
    *,
    pairing: str = "matched",
    report: bool = False,
) -> Tensor | tuple[Tensor, DesignReport]:
    """The full design of a total-order Sobol' analysis: :func:`sample`, paired, :func:`pick_freeze_design`.

    Parameters
    ----------
    nb_dims
        ``d``, the number of inputs.
    nb_design
        ``N``, the number of base points; a power of two for ``"sobol"``. The design has
        ``N * (d + 2)`` rows.
    sampler
        One of :data:`SAMPLERS`.
    seed
        Seed of the sampler. The pairing is computed from the drawn points, so the same
        seed gives the same design.
    pairing
        ``"matched"`` (default: ``B``'s columns re-paired with ``A``'s so that
        ``|r(a_i, b_i)|`` stays small) or ``"halves"`` (``b_i`` = column ``d + i`` of the
        sample, the textbook order, whose pairs can correlate strongly); see the module
        docstring for why and how much.
    report
        Also return a :class:`DesignReport`: the pairing and every ``r(a_i, b_i)``.

    Returns
    -------
    Tensor, or (Tensor, DesignReport)
        ``float32`` ``(nb_design * (nb_dims + 2), nb_dims)`` in ``[0, 1]``, laid out as
        ``[A; B; C_1; …; C_d]``; and with ``report=True`` the report of its pairs.

    Warns
    -----
    CorrelatedDesignWarning
        When the largest ``|r(a_i, b_i)|`` exceeds :data:`CORRELATION_THRESHOLD`: that
        input's index is biased (a larger ``nb_design`` or ``pairing="matched"`` helps).

    Examples
    --------
    >>> design, pairs = sensitivity_design(nb_dims=3, nb_design=16, seed=0, report=True)
    >>> design.shape
    torch.Size([80, 3])
    >>> a, b, c_2 = design[0:16], design[16:32], design[48:64]
    >>> bool((c_2[:, [0, 2]] == a[:, [0, 2]]).all() and (c_2[:, 1] == b[:, 1]).all())
    True
    >>> pairs.pairing, pairs.max_correlation < CORRELATION_THRESHOLD
    ('matched', True)
    """
    pairing = check_pairing(pairing)
    points = sample(sampler, nb_design, nb_dims, seed)
    nb_dims = points.shape[1] // 2
    a, pool = points[:, :nb_dims], points[:, nb_dims:]
    if pairing == "matched":
        order = _matched_columns(a, pool)
        b = pool[:, torch.from_numpy(order)]
    else:
        order = np.arange(nb_dims)
        b = pool
    correlations = pair_correlations(a, b)
    pairs = DesignReport(pairing, tuple(int(nb_dims + j) for j in order), correlations)
    if pairs.max_correlation > CORRELATION_THRESHOLD:
        warnings.warn(
            CorrelatedDesignWarning(
                f"the pick-freeze design's A and B columns of input {pairs.worst_input} correlate at "
                f"r = {float(correlations[pairs.worst_input]):+.2f} (nb_dims={nb_dims}, "
                f"nb_design={nb_design}, sampler={sampler!r}, seed={seed}, pairing={pairing!r}); "
                f"above {CORRELATION_THRESHOLD} its total index is biased by about (1 - r) for an "
                "additive effect: use a larger nb_design"
                + (" or pairing='matched'" if pairing != "matched" else "")
            ),
            stacklevel=2,
        )
    design = pick_freeze_design(a, b.contiguous())
    return (design, pairs) if report else design
