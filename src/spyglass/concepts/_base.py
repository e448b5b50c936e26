"""The one shape of the dictionary-learner family: ``fit / transform / inverse_transform``.

A dictionary learner factorises a matrix of activations ``A`` ``(n_samples, n_features)``
(one row per image crop, or per spatial position of a convolutional layer) as

    A ≈ U W,

with ``W`` ``(n_concepts, n_features)`` the concept bank (``components_``) and ``U``
``(n_samples, n_concepts)`` the concept coefficients of each row. The learners differ in the
constraints they put on ``U`` and ``W``; the base class does what they share: it checks the
input once (a 2-D finite float tensor, enough rows, the right width, fitted before use),
keeps the device and float precision of the input, and hands the algorithm clean tensors.

Learned state carries a trailing underscore, as in scikit-learn: ``components_`` and
``n_features_in_`` for every learner, plus what a learner adds (``mean_`` for PCA, …).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, TypeVar, cast

import numpy as np
import torch
from torch import Tensor

from spyglass.validation import check_int, check_seed

__all__ = [
    "DictionaryLearner",
    "NotFittedError",
    "check_activations",
    "check_codes",
]

Learner = TypeVar("Learner", bound="DictionaryLearner")


class NotFittedError(ValueError, AttributeError):
    """A dictionary learner was used before :meth:`DictionaryLearner.fit`.

    A ``ValueError`` (bad use, as every spyglass input error) and an ``AttributeError``
    (so that ``hasattr(learner, "components_")`` is ``False`` before fitting, as in
    scikit-learn).
    """


MAX_ITERATIONS = 2**31 - 1
"""The most iterations (or restarts) a learner takes: what scikit-learn's compiled solvers hold in a C int."""

NEGATIVE_TOLERANCE = 1e-4
"""``transform`` of a learner that needs ``A >= 0`` accepts values down to ``-1e-4 · max |A|``."""

MAX_MAGNITUDE = 1e12
"""The largest activation a learner accepts: squares and sums of squares stay far from float32's
overflow (3.4e38) even over millions of values. Real activations are many orders below it;
larger values are refused rather than silently rescaled, so that codes keep the input's scale."""


def compute_dtype(tensor: Tensor) -> torch.dtype:
    """float64 stays float64; every other float type (half, bfloat16, float32) computes in float32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _check_float_matrix(value: object, name: str, expected: str) -> Tensor:
    if not isinstance(value, Tensor):
        hint = " (convert with torch.from_numpy)" if isinstance(value, np.ndarray) else ""
        raise TypeError(f"{expected}; got {type(value).__name__}{hint}")
    if not value.is_floating_point():
        hint = " (convert with .float())" if not value.is_complex() and value.dtype != torch.bool else ""
        raise TypeError(f"{expected}; got dtype {value.dtype}{hint}")
    if value.ndim != 2:
        if value.ndim == 4:
            hint = (
                f" (a convolutional layer's (N, C, H, W) maps? make every spatial position a row: "
                f"{name}.permute(0, 2, 3, 1).reshape(-1, C))"
            )
        elif value.ndim == 3:
            hint = f" (a transformer's (N, tokens, C) output? make every token a row: {name}.reshape(-1, C))"
        elif value.ndim == 1:
            hint = f" (a single row? use {name}[None])"
        else:
            hint = ""
        raise ValueError(f"{expected}; got shape {tuple(value.shape)}{hint}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(f"{expected}; got an empty tensor of shape {tuple(value.shape)}")
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        raise ValueError(f"{expected}; got {int((~finite).sum())} NaN or infinite value(s)")
    peak = float(value.detach().abs().max())
    if peak > MAX_MAGNITUDE:
        raise ValueError(
            f"{expected} of magnitude at most {MAX_MAGNITUDE:g}; got values up to {peak:.3g}, whose "
            f"squares overflow the factorisation: divide {name} by a constant first (the concepts are "
            f"the same up to that scale)"
        )
    return value


def check_activations(
    activations: object, *, name: str = "activations", n_features: int | None = None
) -> Tensor:
    """Return ``activations`` if it is a finite 2-D float tensor ``(n_samples, n_features)``.

    Parameters
    ----------
    activations
        The candidate matrix.
    name
        How the argument is called in error messages.
    n_features
        When given, the number of columns it must have.

    Raises
    ------
    TypeError
        If it is not a floating-point tensor.
    ValueError
        If it is not 2-D, is empty, holds a NaN or infinite value or one larger in magnitude
        than :data:`MAX_MAGNITUDE` (refused, not rescaled: divide by a constant first), or
        has the wrong width.
    """
    width = "n_features" if n_features is None else str(n_features)
    expected = f"{name} must be a 2-D float tensor (n_samples, {width}) of finite values"
    matrix = _check_float_matrix(activations, name, expected)
    if n_features is not None and matrix.shape[1] != n_features:
        raise ValueError(
            f"{expected}; got {matrix.shape[1]} features (shape {tuple(matrix.shape)}), "
            f"but the dictionary was fitted on {n_features}"
        )
    return matrix


def check_codes(codes: object, n_concepts: int | None = None, *, name: str = "codes") -> Tensor:
    """Return ``codes`` if it is a finite 2-D float tensor ``(n_samples, n_concepts)``."""
    width = "n_concepts" if n_concepts is None else str(n_concepts)
    expected = f"{name} must be a 2-D float tensor (n_samples, {width}) of finite values"
    matrix = _check_float_matrix(codes, name, expected)
    if n_concepts is not None and matrix.shape[1] != n_concepts:
        raise ValueError(f"{expected}; got shape {tuple(matrix.shape)}")
    return matrix


class DictionaryLearner(ABC):
    """A dictionary of concepts learned from activations: ``A ≈ U W``.

    Parameters
    ----------
    n_concepts
        ``r``, the number of concepts (rows of ``W``, columns of ``U``).
    seed
        Seeds every random choice of the fit; the same seed gives the same dictionary.

    Attributes
    ----------
    components_ : Tensor
        ``W`` ``(n_concepts, n_features)``, on the device and in the precision of the
        activations it was fitted on (float64 stays float64, other floats become float32).
    n_features_in_ : int
        The width of those activations.

    Notes
    -----
    ``transform`` returns coefficients detached from autograd; ``differentiable_transform``
    returns the same coefficients (up to the learner's documented exceptions) with a
    gradient that flows back to the activations. ``inverse_transform`` is plain tensor
    algebra and differentiable in ``U``.
    """

    name: ClassVar[str] = ""
    requires_nonnegative: ClassVar[bool] = False
    """The fit needs ``A >= 0`` (NMF)."""
    max_concepts_is_features: ClassVar[bool] = False
    """At most ``n_features`` concepts can be learned (PCA, ICA: no overcomplete dictionary)."""

    def __init__(self, n_concepts: int, *, seed: int = 0) -> None:
        self.n_concepts = check_int(n_concepts, "n_concepts", 1)
        self.seed = check_seed(seed)
        self._components: Tensor | None = None
        self._n_features: int | None = None

    # --- learned state -------------------------------------------------------------------

    @property
    def components_(self) -> Tensor:
        """The concept bank ``W`` ``(n_concepts, n_features)``."""
        return self._fitted_components()

    @property
    def n_features_in_(self) -> int:
        """The number of features the dictionary was fitted on."""
        self._fitted_components()
        return cast(int, self._n_features)

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self._components is not None

    def _fitted_components(self) -> Tensor:
        if self._components is None:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(activations) before "
                f"transform, inverse_transform, differentiable_transform or components_"
            )
        return self._components

    def _like(self, tensor: Tensor, reference: Tensor) -> Tensor:
        """A learned tensor on ``reference``'s device, in its precision."""
        return tensor.to(device=reference.device, dtype=reference.dtype)

    # --- the verbs -----------------------------------------------------------------------

    def fit(self: Learner, activations: Tensor) -> Learner:
        """Learn the concept bank ``W`` from ``activations`` ``(n_samples, n_features)``.

        Returns
        -------
        DictionaryLearner
            ``self``, fitted.

        Raises
        ------
        TypeError, ValueError
            If ``activations`` is not a finite 2-D float tensor, has fewer rows than
            ``n_concepts``, fewer columns than ``n_concepts`` for a learner that cannot be
            overcomplete, or negative values for a learner that needs ``A >= 0``.
        """
        matrix = check_activations(activations)
        n_samples, n_features = matrix.shape
        if n_samples < self.n_concepts:
            raise ValueError(
                f"{type(self).__name__} needs at least n_concepts={self.n_concepts} rows of activations "
                f"to fit; got {n_samples} (use more images, every spatial position as a row, "
                f"or fewer concepts)"
            )
        if self.max_concepts_is_features and n_features < self.n_concepts:
            raise ValueError(
                f"{type(self).__name__} learns at most n_features concepts; got n_concepts={self.n_concepts} "
                f"for {n_features} features (use fewer concepts, or NMF/SparseCoding for an overcomplete "
                f"dictionary)"
            )
        if n_samples > 1 and bool((matrix == matrix[:1]).all()):
            raise ValueError(
                f"{type(self).__name__} got {n_samples} identical rows of activations (all "
                f"{'zero' if float(matrix.abs().max()) == 0 else 'equal'}): there is nothing to factorise; "
                f"use more varied images or crops, or another layer"
            )
        self._check_sign(matrix)
        self._fit(matrix.detach().to(compute_dtype(matrix)))
        if self._components is None:  # a defect of the learner, not of the user's input
            raise RuntimeError(f"{type(self).__name__}._fit did not set the components")
        self._n_features = n_features
        return self

    def transform(self, activations: Tensor) -> Tensor:
        """The concept coefficients ``U`` ``(n_samples, n_concepts)`` of ``activations``.

        Computed in torch on the device of ``activations`` and detached from autograd;
        the rows need not be those the dictionary was fitted on.
        """
        matrix = self._checked_input(activations)
        with torch.no_grad():
            return self._transform(matrix.detach().to(compute_dtype(matrix)))

    def differentiable_transform(self, activations: Tensor) -> Tensor:
        """The concept coefficients of ``activations``, differentiable with respect to them.

        The same values as :meth:`transform` with a gradient that flows back to
        ``activations`` (and through them to the model), except for :class:`KMeans`, whose
        one-hot codes have no useful gradient and which returns soft assignments instead.
        """
        matrix = self._checked_input(activations)
        return self._differentiable_transform(matrix.to(compute_dtype(matrix)))

    def fit_transform(self, activations: Tensor) -> Tensor:
        """``fit(activations).transform(activations)``."""
        return self.fit(activations).transform(activations)

    def inverse_transform(self, codes: Tensor) -> Tensor:
        """The activations ``U W`` ``(n_samples, n_features)`` rebuilt from coefficients ``U``.

        Plus the mean ``μ`` for the learners that centre the data (PCA, ICA). Differentiable
        with respect to ``U``.
        """
        components = self._fitted_components()
        matrix = check_codes(codes, self.n_concepts)
        matrix = matrix.to(compute_dtype(matrix))
        return self._inverse_transform(matrix, self._like(components, matrix))

    # --- what a learner implements -------------------------------------------------------

    @abstractmethod
    def _fit(self, activations: Tensor) -> None:
        """Learn from checked activations (float32 or float64); set ``self._components``."""

    @abstractmethod
    def _transform(self, activations: Tensor) -> Tensor:
        """Coefficients of checked activations, in their precision and on their device."""

    def _differentiable_transform(self, activations: Tensor) -> Tensor:
        # Learners whose transform is plain tensor algebra are differentiable as they are.
        return self._transform(activations)

    def _inverse_transform(self, codes: Tensor, components: Tensor) -> Tensor:
        return codes @ components

    def _checked_input(self, activations: Tensor) -> Tensor:
        self._fitted_components()
        matrix = check_activations(activations, n_features=self._n_features)
        # Coding tolerates rounding-sized negatives (a finite-difference step, a perturbation
        # of a ReLU's zeros): the non-negative least-squares code is defined there.
        return self._check_sign(matrix, tolerance=NEGATIVE_TOLERANCE * float(matrix.detach().abs().max()))

    def _check_sign(self, matrix: Tensor, tolerance: float = 0.0) -> Tensor:
        """``matrix``, or a ValueError if the learner needs ``A >= 0`` and a value is below ``-tolerance``.

        The codes of a non-negative dictionary are meant for the non-negative activations it
        was fitted on; a negative row means another layer's (or signed) activations.
        """
        if self.requires_nonnegative:
            low = float(matrix.detach().min())
            if low < -tolerance:
                negative = int((matrix < 0).sum())
                raise ValueError(
                    f"{type(self).__name__} needs non-negative activations (A ≈ U W with U, W >= 0); got "
                    f"{negative} negative value(s) of {matrix.numel()}, minimum {low:.4g}. This layer's "
                    f"activations are signed (before a ReLU, or a transformer block): use SemiNMF "
                    f"(non-negative codes, signed concepts) or PCA, or pick a layer after a ReLU"
                )
        return matrix

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return f"{type(self).__name__}(n_concepts={self.n_concepts}, seed={self.seed}) [{state}]"
