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
method (Fel et al., 2021). ``A`` and ``B`` are the two halves of *one* ``2d``-dimensional
QMC sample (columns ``[0, d)`` and ``[d, 2d)``), the standard construction that keeps the
low-discrepancy properties of the joint sample (Saltelli, 2002; Saltelli et al., 2010).

Samplers come from :mod:`scipy.stats.qmc` (scrambled Sobol', scrambled Halton, Latin
hypercube) and from :func:`numpy.random.default_rng` (plain uniform); this module writes no
low-discrepancy sequence of its own.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from numpy.typing import NDArray
from scipy.stats import qmc
from torch import Tensor

__all__ = ["SAMPLERS", "pick_freeze_design", "sample", "sensitivity_design"]

SAMPLERS: tuple[str, ...] = ("sobol", "halton", "lhs", "random")
"""Names accepted by ``sampler``: scrambled Sobol', scrambled Halton, Latin hypercube, uniform."""

# scipy 1.15 renamed the engines' ``seed`` keyword to ``rng``; a numpy Generator means the same
# thing under either name, so pass one under whichever name this scipy knows.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(qmc.Sobol).parameters else "seed"


def check_int(value: object, name: str, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= {minimum}; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}")
    return int(value)


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
    seed = check_int(seed, "seed", 0)
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


def sensitivity_design(nb_dims: int, nb_design: int = 32, sampler: str = "sobol", seed: int = 0) -> Tensor:
    """The full design of a total-order Sobol' analysis: :func:`sample`, then :func:`pick_freeze_design`.

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
        Seed of the sampler.

    Returns
    -------
    Tensor
        ``float32`` ``(nb_design * (nb_dims + 2), nb_dims)`` in ``[0, 1]``, laid out as
        ``[A; B; C_1; …; C_d]``.

    Examples
    --------
    >>> design = sensitivity_design(nb_dims=3, nb_design=8, seed=0)
    >>> design.shape
    torch.Size([40, 3])
    >>> a, b, c_2 = design[0:8], design[8:16], design[24:32]
    >>> bool((c_2[:, [0, 2]] == a[:, [0, 2]]).all() and (c_2[:, 1] == b[:, 1]).all())
    True
    """
    points = sample(sampler, nb_design, nb_dims, seed)
    nb_dims = points.shape[1] // 2
    return pick_freeze_design(points[:, :nb_dims], points[:, nb_dims:])
