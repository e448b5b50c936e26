"""Non-negative codes: NMF (CRAFT's dictionary) and Semi-NMF (for signed activations).

Both factorise activations ``A`` ``(n_samples, n_features)`` as ``A ≈ U W`` with
non-negative concept coefficients ``U >= 0``, so that a row is an additive mix of concepts:

- :class:`NMF` (Lee & Seung, 1999) also asks ``W >= 0``, and so ``A >= 0``: the layers after a
  ReLU, which is where CRAFT (Fel et al., "CRAFT: Concept Recursive Activation FacTorization
  for Explainability", CVPR 2023) extracts its concepts.
- :class:`SemiNMF` (Ding, Li & Jordan, "Convex and Semi-Nonnegative Matrix Factorizations",
  TPAMI 2010) leaves ``W`` free, for layers whose activations are signed.

Fitting and coding are done by different code, on purpose. Learning ``W`` is one big
alternating problem solved once: for NMF, scikit-learn's coordinate-descent solver is a
well-kept, well-tested implementation and we use it as it is; Semi-NMF's multiplicative
updates are a few lines of torch. Coding, ``U = argmin_{U >= 0} ‖A − U W‖`` with ``W``
fixed, runs every time a concept is explained, at every spatial position of every image,
on the model's device, and needs a gradient with respect to ``A`` (concept attribution
maps backpropagate through it). No library offers that, so :mod:`._coding` solves the
non-negative least-squares problems of all rows at once in torch (coordinate descent,
then an exact active-set polish) and differentiates the solution implicitly through its
optimality conditions: on the support ``S`` of a row, ``u_S = a W_Sᵀ (W_S W_Sᵀ)⁻¹``.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.decomposition import NMF as SklearnNMF
from torch import Tensor

from spyglass.concepts._base import MAX_ITERATIONS, DictionaryLearner
from spyglass.concepts._coding import differentiable_encode, encode
from spyglass.concepts._registry import register
from spyglass.validation import check_int, check_positive_float

__all__ = ["NMF", "SemiNMF"]

_NMF_INITS = (None, "random", "nndsvd", "nndsvda", "nndsvdar")
_SEMI_NMF_CHECK_EVERY = 10


class _NonNegativeCodes(DictionaryLearner):
    """Shared by NMF and Semi-NMF: codes are the non-negative least-squares fit to ``W``."""

    def __init__(
        self,
        n_concepts: int,
        *,
        max_iter: int,
        tol: float,
        transform_max_iter: int,
        transform_tol: float,
        seed: int,
    ) -> None:
        super().__init__(n_concepts, seed=seed)
        self.max_iter = check_int(max_iter, "max_iter", 1, maximum=MAX_ITERATIONS)
        self.tol = check_positive_float(tol, "tol", allow_zero=True)
        self.transform_max_iter = check_int(
            transform_max_iter, "transform_max_iter", 1, maximum=MAX_ITERATIONS
        )
        self.transform_tol = check_positive_float(transform_tol, "transform_tol")

    def _transform(self, activations: Tensor) -> Tensor:
        components = self._like(self.components_, activations)
        return encode(activations, components, max_iter=self.transform_max_iter, tol=self.transform_tol)

    def _differentiable_transform(self, activations: Tensor) -> Tensor:
        components = self._like(self.components_, activations)
        return differentiable_encode(
            activations, components, max_iter=self.transform_max_iter, tol=self.transform_tol
        )


@register("nmf")
class NMF(_NonNegativeCodes):
    """Non-negative matrix factorisation ``A ≈ U W`` with ``U, W >= 0``.

    ``W`` minimises ``‖A − U W‖_F²`` over both factors (scikit-learn's coordinate descent);
    ``transform`` returns, for every row ``a``, the non-negative least-squares code
    ``u = argmin_{u >= 0} ‖a − u W‖`` computed in torch on the device of ``a``, and
    ``differentiable_transform`` the same code with its implicit gradient (see the module
    documentation).

    Parameters
    ----------
    n_concepts
        ``r``, the number of concepts; may exceed the number of features.
    max_iter, tol
        Passed to :class:`sklearn.decomposition.NMF` for the fit.
    init
        scikit-learn's initialisation: ``None`` (its default: ``"nndsvda"`` when
        ``r <= min(n_samples, n_features)``, else ``"random"``), ``"random"``, ``"nndsvd"``,
        ``"nndsvda"`` or ``"nndsvdar"``.
    transform_max_iter, transform_tol
        Coordinate-descent sweeps at most, and the relative KKT tolerance, of the coding.
    seed
        Seeds the random initialisations.

    Attributes
    ----------
    components_ : Tensor
        ``W`` ``(n_concepts, n_features)``, non-negative.
    reconstruction_err_ : float
        ``‖A − U W‖_F`` at the end of the fit (scikit-learn's value).
    n_iter_ : int
        Iterations of the fit.

    Raises
    ------
    ValueError
        On fit and on transform, if the activations hold negative values (use
        :class:`SemiNMF` or :class:`~spyglass.concepts.PCA` for such layers): a negative row
        is not from the non-negative layer the dictionary was fitted on.

    Examples
    --------
    Activations mixed from 3 non-negative concepts are explained almost exactly by 3:

    >>> import torch
    >>> from spyglass.concepts import NMF
    >>> generator = torch.Generator().manual_seed(0)
    >>> concepts = torch.rand(3, 16, generator=generator)
    >>> activations = torch.rand(200, 3, generator=generator) @ concepts
    >>> nmf = NMF(n_concepts=3).fit(activations)
    >>> codes = nmf.transform(activations)
    >>> codes.shape, bool((codes >= 0).all())
    (torch.Size([200, 3]), True)
    >>> error = (nmf.inverse_transform(codes) - activations).norm() / activations.norm()
    >>> bool(error < 1e-2)
    True
    """

    requires_nonnegative = True

    def __init__(
        self,
        n_concepts: int,
        *,
        max_iter: int = 500,
        tol: float = 1e-4,
        init: str | None = None,
        transform_max_iter: int = 1000,
        transform_tol: float = 1e-6,
        seed: int = 0,
    ) -> None:
        super().__init__(
            n_concepts,
            max_iter=max_iter,
            tol=tol,
            transform_max_iter=transform_max_iter,
            transform_tol=transform_tol,
            seed=seed,
        )
        if init not in _NMF_INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, _NMF_INITS))}; got {init!r}")
        self.init = init
        self.reconstruction_err_: float = float("nan")
        self.n_iter_: int = 0

    def _fit(self, activations: Tensor) -> None:
        model = SklearnNMF(
            n_components=self.n_concepts,
            init=self.init,
            solver="cd",
            beta_loss="frobenius",
            tol=self.tol,
            max_iter=self.max_iter,
            random_state=self.seed,
        )
        model.fit(activations.cpu().numpy())
        self._components = torch.from_numpy(np.ascontiguousarray(model.components_)).to(activations)
        self.reconstruction_err_ = float(model.reconstruction_err_)
        self.n_iter_ = int(model.n_iter_)


def _positive_part(matrix: Tensor) -> Tensor:
    return matrix.clamp(min=0)


def _negative_part(matrix: Tensor) -> Tensor:
    return (-matrix).clamp(min=0)


@register("semi_nmf")
class SemiNMF(_NonNegativeCodes):
    """Semi-non-negative matrix factorisation ``A ≈ U W`` with ``U >= 0`` and ``W`` free.

    For layers whose activations are signed: a row is still an additive (non-negative) mix
    of concepts, but a concept may lower a feature as well as raise it. The fit follows
    Ding, Li & Jordan (TPAMI 2010): start from k-means (``U`` the cluster indicators plus
    0.2), then alternate the least-squares concepts and the multiplicative update of the
    coefficients,

        W ← (UᵀU)⁺ Uᵀ A,
        U ← U ⊙ sqrt( ([A Wᵀ]⁺ + U [W Wᵀ]⁻) / ([A Wᵀ]⁻ + U [W Wᵀ]⁺) ),

    where ``M⁺`` and ``M⁻`` are the positive and negative parts of ``M``. Neither step
    increases ``‖A − U W‖_F`` (the paper's Theorem 1). The fit runs in torch on the
    activations' device; the k-means start uses scikit-learn. ``transform`` is the same
    non-negative least-squares coding as :class:`NMF`'s.

    Parameters
    ----------
    n_concepts
        ``r``, the number of concepts.
    max_iter
        Alternations of the fit at most.
    tol
        Stop when an alternation lowers the error by less than ``tol`` times itself, on
        average over the last 10 (the error is measured every 10 alternations).
    transform_max_iter, transform_tol
        Coordinate-descent sweeps at most, and the relative KKT tolerance, of the coding.
    seed
        Seeds the k-means start.

    Attributes
    ----------
    components_ : Tensor
        ``W`` ``(n_concepts, n_features)``, signed.
    reconstruction_err_ : float
        ``‖A − U W‖_F`` at the end of the fit.
    n_iter_ : int
        Alternations run (``max_iter`` when the fit stopped on that cap).

    Examples
    --------
    >>> import torch
    >>> from spyglass.concepts import SemiNMF
    >>> generator = torch.Generator().manual_seed(0)
    >>> concepts = torch.randn(3, 16, generator=generator)  # signed
    >>> activations = torch.rand(200, 3, generator=generator) @ concepts
    >>> semi = SemiNMF(n_concepts=3).fit(activations)
    >>> codes = semi.transform(activations)
    >>> bool((codes >= 0).all()), bool((semi.components_ < 0).any())
    (True, True)
    >>> error = (semi.inverse_transform(codes) - activations).norm() / activations.norm()
    >>> bool(error < 0.05)
    True
    """

    def __init__(
        self,
        n_concepts: int,
        *,
        max_iter: int = 500,
        tol: float = 1e-5,
        transform_max_iter: int = 1000,
        transform_tol: float = 1e-6,
        seed: int = 0,
    ) -> None:
        super().__init__(
            n_concepts,
            max_iter=max_iter,
            tol=tol,
            transform_max_iter=transform_max_iter,
            transform_tol=transform_tol,
            seed=seed,
        )
        self.reconstruction_err_: float = float("nan")
        self.n_iter_: int = 0

    def _fit(self, activations: Tensor) -> None:
        labels = (
            SklearnKMeans(n_clusters=self.n_concepts, n_init=1, random_state=self.seed)
            .fit(activations.cpu().numpy())
            .labels_
        )
        codes = torch.full(
            (activations.shape[0], self.n_concepts), 0.2, dtype=activations.dtype, device=activations.device
        )
        codes[torch.arange(activations.shape[0]), torch.from_numpy(labels).to(activations.device).long()] += (
            1.0
        )
        tiny = torch.finfo(activations.dtype).tiny
        error = float("inf")
        for iteration in range(1, self.max_iter + 1):
            # Least-squares concepts; the pseudo-inverse copes with an unused concept.
            components = torch.linalg.pinv(codes.T @ codes, hermitian=True) @ (codes.T @ activations)
            projection = activations @ components.T
            gram = components @ components.T
            numerator = _positive_part(projection) + codes @ _negative_part(gram)
            denominator = _negative_part(projection) + codes @ _positive_part(gram)
            codes = codes * torch.sqrt(numerator / denominator.clamp(min=tiny))
            self.n_iter_ = iteration
            if iteration % _SEMI_NMF_CHECK_EVERY and iteration != self.max_iter:
                continue
            # Measured directly (one more product, hence only every few alternations):
            # expanding ‖A‖² − 2<U, A Wᵀ> + <UᵀU, W Wᵀ> loses the small errors of a good fit
            # to cancellation in float32.
            previous, error = error, float(torch.linalg.matrix_norm(activations - codes @ components))
            if previous - error <= _SEMI_NMF_CHECK_EVERY * self.tol * error:
                break
        self._components = components
        self.reconstruction_err_ = error
