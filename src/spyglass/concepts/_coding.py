"""Codes for a fixed dictionary, batched over rows: non-negative least squares and the lasso.

Every row ``a`` of ``A`` ``(n, p)`` gets the code ``u`` ``(r,)`` that minimises

    ½ ‖a − u W‖² + λ ‖u‖₁        subject to u ≥ 0 when ``positive``,

which with ``G = W Wᵀ`` and ``b = a Wᵀ`` is the quadratic ``½ uᵀ G u − bᵀ u + λ ‖u‖₁``.
``λ = 0, positive`` is NNLS (the codes of NMF and Semi-NMF); ``λ > 0`` is the lasso of
sparse coding.

Solver, in two parts that take turns, batched over all rows and on any device:

1. Cyclic coordinate descent: each coordinate minimised exactly in turn (the "HALS with
   ``W`` fixed" update ``u_k ← max(0, b_k − Σ_{j≠k} G_kj u_j − λ) / G_kk`` for NNLS, a soft
   threshold for the lasso), one sweep being ``r`` matrix-vector products on the whole
   batch. It finds the support (which codes are non-zero) fast, but converges to the
   exact values only linearly, slowly for an ill-conditioned dictionary.
2. The *polish*: an active-set method (Lawson & Hanson for NNLS, feature-sign search for
   the lasso) started from those codes. It solves the optimality conditions on the
   support exactly, ``G_SS u_S = b_S − λ s_S`` (a small linear system per row, solved in
   batches), and corrects the support where they fail. A row is done when the KKT
   conditions hold to rounding.

Ten sweeps and one polish settle almost every row; rows the polish cannot certify (a
singular support, a row out of rounds) get more sweeps, in doubling rounds, and a polish
after each, until ``max_iter`` sweeps. The codes agree with an exact active-set solver
(``scipy.optimize.nnls``) to rounding, even at condition numbers of ``W Wᵀ`` near 10⁷.

Gradient. Where the support is locally constant (almost everywhere), ``u_S = (a W_Sᵀ −
λ s_S) G_SS⁻¹`` and ``u`` is zero off ``S``, so the vector-Jacobian product of an upstream
gradient ``g`` is ``z W`` with ``G_SS z_S = g_S`` and ``z`` zero off ``S``: one more small
batched solve, with no need to unroll the solver (implicit differentiation of the KKT
conditions; Amos & Kolter, "OptNet", ICML 2017, for the general case). At the measure-zero
set of rows where a code sits at 0 with a zero gradient, this is the one-sided derivative
that keeps it at 0. The gradient flows to ``A`` only; ``W`` is a fitted constant.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["differentiable_encode", "encode"]

# Rows per batched solve: keeps the (rows, r, r) systems near 4 M numbers.
_SYSTEM_ELEMENTS = 1 << 22
_CHECK_EVERY = 5
_WARM_UP_SWEEPS = 10
_POLISH_ROUNDS = 8


def _gradient(codes: Tensor, gram: Tensor, rhs: Tensor) -> Tensor:
    """``∇ (½ uᵀ G u − bᵀ u)`` for every row, ``U G − B``."""
    return codes @ gram - rhs


def _tolerance(codes: Tensor, gram: Tensor, rhs: Tensor, l1: float, tol: float) -> Tensor:
    """Per-row KKT tolerance: ``tol`` times the row's scale, and never below rounding.

    The scale ``max_k |b_k| + λ`` makes ``tol`` invariant to rescaling ``A`` or ``W``. The
    floor is the rounding error of the gradient ``U G − B`` itself, without which float32
    codes of an ill-conditioned dictionary could never be certified.
    """
    eps = torch.finfo(rhs.dtype).eps
    scale = rhs.abs().amax(dim=1) + l1
    rounding = (codes.abs() @ gram.abs() + rhs.abs()).amax(dim=1) * (4 * gram.shape[0] * eps)
    return torch.maximum(tol * scale, rounding).clamp(min=torch.finfo(rhs.dtype).tiny)


def _violation(codes: Tensor, gradient: Tensor, l1: float, positive: bool) -> Tensor:
    """Per-row largest breach of the KKT conditions (0 at the optimum)."""
    if positive:
        shifted = gradient + l1
        breach = torch.where(codes > 0, shifted.abs(), (-shifted).clamp(min=0))
    else:
        breach = torch.where(
            codes != 0,
            (gradient + l1 * torch.sign(codes)).abs(),
            (gradient.abs() - l1).clamp(min=0),
        )
    return breach.amax(dim=1)


def _solved(codes: Tensor, gram: Tensor, rhs: Tensor, l1: float, positive: bool, tol: float) -> Tensor:
    """Which rows meet the KKT conditions to tolerance."""
    breach = _violation(codes, _gradient(codes, gram, rhs), l1, positive)
    return breach <= _tolerance(codes, gram, rhs, l1, tol)


def _coordinate_descent(
    gram: Tensor, rhs: Tensor, codes: Tensor, *, l1: float, positive: bool, max_iter: int, tol: float
) -> Tensor:
    """Sweeps from ``codes`` until every row meets the KKT conditions to ``tol`` (or ``max_iter``)."""
    if positive and l1 > 0:
        # With u >= 0, λ‖u‖₁ = λ Σ u_k is linear: the positive lasso is NNLS with b − λ.
        rhs, l1 = rhs - l1, 0.0
    n, r = rhs.shape
    result = codes.clone()
    diagonal = gram.diagonal().tolist()
    off_diagonal = gram - torch.diag_embed(gram.diagonal())
    # A zero concept (an empty row of W) cannot explain anything: its code stays 0.
    usable = [k for k in range(r) if diagonal[k] > 0]
    working = torch.arange(n, device=rhs.device)
    # Rows of the transposed layout are contiguous: updating code k writes one row.
    codes_t, rhs_t = codes.T.contiguous(), rhs.T.contiguous()
    for sweep in range(1, max_iter + 1):
        for k in usable:
            # The best u_k with the others fixed: (b_k − Σ_{j≠k} G_kj u_j), shrunk, over G_kk.
            target = torch.addmv(rhs_t[k], codes_t.T, off_diagonal[k], alpha=-1)
            if positive:
                target.clamp_(min=0)
            elif l1 > 0:
                target = torch.sign(target) * (target.abs() - l1).clamp_(min=0)
            codes_t[k] = target.mul_(1.0 / diagonal[k])
        if sweep % _CHECK_EVERY and sweep != max_iter:
            continue
        done = _solved(codes_t.T, gram, rhs_t.T, l1, positive, tol)
        if bool(done.any()):
            result[working[done]] = codes_t.T[done]
            keep = ~done
            working, codes_t, rhs_t = working[keep], codes_t[:, keep], rhs_t[:, keep]
            if working.numel() == 0:
                return result
    result[working] = codes_t.T
    return result


def _solve_on_support(gram: Tensor, support: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``G_SS x_S = rhs_S`` for every row, ``x`` zero off ``S``.

    Returns the solutions and, per row, whether the system was solvable (non-singular
    with a finite solution); unsolvable rows hold the minimum-norm (pseudo-inverse) one.
    """
    n, r = rhs.shape
    chunk = max(1, _SYSTEM_ELEMENTS // (r * r))
    solution = torch.zeros_like(rhs)
    solvable = torch.ones(n, dtype=torch.bool, device=rhs.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        mask = support[start:stop].to(rhs.dtype)
        # G restricted to S, with the identity off S so that every system stays r × r.
        system = gram * (mask[:, :, None] * mask[:, None, :]) + torch.diag_embed(1 - mask)
        right = (rhs[start:stop] * mask)[:, :, None]
        values, info = torch.linalg.solve_ex(system, right)
        values = values[:, :, 0]
        ok = (info == 0) & torch.isfinite(values).all(dim=1)
        if not bool(ok.all()):
            bad = ~ok
            pseudo = torch.linalg.pinv(system[bad], hermitian=True) @ right[bad]
            values[bad] = pseudo[:, :, 0] * mask[bad]
        solution[start:stop] = values
        solvable[start:stop] = ok
    return solution, solvable


def _polish(codes: Tensor, gram: Tensor, rhs: Tensor, *, l1: float, positive: bool) -> tuple[Tensor, Tensor]:
    """Exact codes by a batched primal active-set method started from ``codes``.

    Each round solves the optimality conditions on the current support (signs ``s``),
    ``G_SS z_S = b_S − λ s_S``. A row whose ``z`` keeps every sign moves to ``z`` and adds the
    coordinates off the support that break the KKT conditions; a row whose ``z`` breaks a
    sign moves from ``u`` towards ``z`` only until the first coordinate reaches 0, and drops
    it (Lawson & Hanson, "Solving Least Squares Problems", 1974, ch. 23, for NNLS; the
    feature-sign search of Lee, Battle, Raina & Ng, NeurIPS 2006, for the lasso). Adding
    every violator at once saves rounds when coordinate descent left several out; a row
    where that stalls (a new coordinate at once of the wrong sign) goes on adding only the
    worst one, as Lawson & Hanson do. Every move lowers the objective, so a row that runs
    out of rounds is still no worse.

    Its ``z`` is exact on its support, so a row is certified only when the KKT conditions
    hold to rounding: a looser, gradient-sized tolerance would accept a wrong support of
    an ill-conditioned dictionary, whose codes can be far from the optimum.

    Returns the codes and the indices of the rows not certified optimal.
    """
    result = codes.clone()
    signs = torch.sign(codes)
    pending = torch.arange(codes.shape[0], device=codes.device)
    stuck = torch.zeros(codes.shape[0], dtype=torch.bool, device=codes.device)
    one_at_a_time = torch.zeros(codes.shape[0], dtype=torch.bool, device=codes.device)
    for _ in range(_POLISH_ROUNDS + 2 * codes.shape[1]):
        if pending.numel() == 0:
            break
        current, sub_signs, sub_rhs = result[pending], signs[pending], rhs[pending]
        support = sub_signs != 0
        target, solvable = _solve_on_support(gram, support, sub_rhs - l1 * sub_signs)
        broken = support & (torch.sign(target) != sub_signs)
        # Fraction of the way to z at which each broken coordinate reaches 0, in [0, 1].
        distance = current - target
        # A coordinate just added (u_k = 0) whose z_k is 0 too: ratio 0, dropped again.
        distance = torch.where(broken & (distance != 0), distance, torch.ones_like(distance))
        ratio = torch.where(broken, current / distance, torch.full_like(current, torch.inf))
        step = ratio.amin(dim=1).clamp(max=1.0)
        reached = ~broken.any(dim=1)
        one_at_a_time[pending[~reached & (step <= 0)]] = True
        moved = torch.where(reached[:, None], target, current + step[:, None] * (target - current))
        hits = broken & (ratio <= step[:, None])
        moved = torch.where(hits, torch.zeros_like(moved), moved)
        new_signs = torch.where(hits, torch.zeros_like(sub_signs), sub_signs)
        gradient = _gradient(moved, gram, sub_rhs)
        threshold = _tolerance(moved, gram, sub_rhs, l1, 0.0)[:, None]
        if positive:
            excess = -(gradient + l1)
            add_sign = torch.ones_like(gradient)
        else:
            excess = gradient.abs() - l1
            add_sign = -torch.sign(gradient)
        wants_in = (new_signs == 0) & (excess > threshold)
        certified = solvable & reached & ~wants_in.any(dim=1)
        grow = solvable & reached & wants_in.any(dim=1)
        single = one_at_a_time[pending]
        new_signs = torch.where(wants_in & (grow & ~single)[:, None], add_sign, new_signs)
        worst = torch.where(wants_in, excess, torch.full_like(excess, -torch.inf)).argmax(dim=1)
        rows = torch.nonzero(grow & single).squeeze(1)
        new_signs[rows, worst[rows]] = add_sign[rows, worst[rows]]
        # A singular support cannot be solved on: leave the row to coordinate descent.
        keep = solvable
        result[pending[keep]] = moved[keep]
        signs[pending] = new_signs
        stuck[pending[~solvable]] = True
        pending = pending[solvable & ~certified]
    failed = stuck.clone()
    failed[pending] = True
    return result, torch.nonzero(failed).squeeze(1)


def encode(
    activations: Tensor,
    dictionary: Tensor,
    *,
    l1: float = 0.0,
    positive: bool = True,
    max_iter: int = 1000,
    tol: float = 1e-6,
    init: Tensor | None = None,
) -> Tensor:
    """The codes ``U`` ``(n, r)`` of ``activations`` ``(n, p)`` for ``dictionary`` ``(r, p)``.

    Parameters
    ----------
    activations, dictionary
        Same device and dtype.
    l1
        ``λ``, the lasso penalty (0: least squares).
    positive
        Constrain the codes to be ``>= 0``.
    max_iter
        Coordinate-descent sweeps at most.
    tol
        For rows the active-set polish cannot certify exact (singular supports): stop
        when the largest KKT breach is at most ``tol`` times the row's scale
        (``max_k |b_k| + λ``).
    init
        Codes to start from (a warm start, e.g. those of a slightly different
        dictionary); zeros by default. Entries of the wrong sign are clipped.
    """
    with torch.no_grad():
        gram = dictionary @ dictionary.T
        rhs = activations @ dictionary.T
        options: dict[str, Any] = {"l1": l1, "positive": positive, "tol": tol}
        if init is None:
            codes = torch.zeros_like(rhs)
        else:
            codes = init.to(rhs).clamp(min=0) if positive else init.to(rhs).clone()
        pending = torch.arange(rhs.shape[0], device=rhs.device)
        if init is not None:
            # A warm start often has the right supports already: try the polish first.
            codes, failed = _polish(codes, gram, rhs, l1=l1, positive=positive)
            pending = failed[~_solved(codes[failed], gram, rhs[failed], l1, positive, tol)]
        # Sweeps in doubling rounds, each followed by the polish: most rows are exact after
        # the first round; a hard row gets more sweeps, from its polished codes, until its
        # support is right.
        sweeps, budget = 0, _WARM_UP_SWEEPS
        while pending.numel() > 0 and sweeps < max_iter:
            budget = min(budget, max_iter - sweeps)
            sub_rhs = rhs[pending]
            descended = _coordinate_descent(gram, sub_rhs, codes[pending], max_iter=budget, **options)
            polished, failed = _polish(descended, gram, sub_rhs, l1=l1, positive=positive)
            codes[pending] = polished
            # A row that coordinate descent alone has solved to tolerance needs no more rounds.
            unsolved = ~_solved(polished[failed], gram, sub_rhs[failed], l1, positive, tol)
            pending = pending[failed[unsolved]]
            sweeps, budget = sweeps + budget, 2 * budget
        return codes


class _Encode(torch.autograd.Function):
    """``encode`` as an autograd function: gradient by the implicit active-set formula."""

    @staticmethod
    def forward(
        ctx: Any,
        activations: Tensor,
        dictionary: Tensor,
        l1: float,
        positive: bool,
        max_iter: int,
        tol: float,
    ) -> Tensor:
        codes = encode(activations, dictionary, l1=l1, positive=positive, max_iter=max_iter, tol=tol)
        ctx.save_for_backward(codes, dictionary)
        return codes

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_codes: Tensor) -> tuple[Tensor | None, ...]:
        codes, dictionary = ctx.saved_tensors
        support = codes != 0
        # Off the support the code is pinned at 0: no gradient flows through it.
        weights, _ = _solve_on_support(dictionary @ dictionary.T, support, grad_codes * support)
        return weights @ dictionary, None, None, None, None, None


def differentiable_encode(
    activations: Tensor,
    dictionary: Tensor,
    *,
    l1: float = 0.0,
    positive: bool = True,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> Tensor:
    """:func:`encode`, differentiable with respect to ``activations`` (``dictionary`` is fixed)."""
    codes: Tensor = _Encode.apply(activations, dictionary.detach(), l1, positive, max_iter, tol)
    return codes
