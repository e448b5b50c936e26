"""The batched NNLS / lasso solver behind NMF, Semi-NMF and sparse coding, and its gradient."""

import numpy as np
import pytest
import torch
from scipy.optimize import nnls
from sklearn.decomposition import sparse_encode

from spyglass.concepts import _coding, create_learner, list_learners
from spyglass.concepts._coding import differentiable_encode, encode
from tests.concepts.planted import planted_nonnegative


def _problem(
    n_samples: int, n_features: int, n_concepts: int, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed activations and a non-negative dictionary: NNLS leaves a good share of codes at 0."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = torch.rand(n_concepts, n_features, generator=generator, dtype=dtype) ** 2
    mixed = torch.rand(n_samples, n_concepts, generator=generator, dtype=dtype) @ dictionary
    noise = 0.3 * torch.randn(n_samples, n_features, generator=generator, dtype=dtype)
    return mixed + noise, dictionary


def _scipy_nnls(activations: torch.Tensor, dictionary: torch.Tensor) -> np.ndarray:
    matrix = dictionary.double().numpy().T
    return np.stack([nnls(matrix, row)[0] for row in activations.double().numpy()])


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-4), (torch.float64, 1e-10)])
def test_nnls_matches_scipy_row_by_row(dtype: torch.dtype, atol: float) -> None:
    activations, dictionary = _problem(200, 32, 8, dtype=dtype)
    codes = encode(activations, dictionary)
    assert codes.dtype == dtype
    assert 0.02 < float((codes == 0).double().mean()) < 0.9  # the constraint is active
    np.testing.assert_allclose(
        codes.double().numpy(), _scipy_nnls(activations, dictionary), atol=atol, rtol=0
    )


def test_nnls_matches_scipy_on_an_ill_conditioned_dictionary() -> None:
    generator = torch.Generator().manual_seed(1)
    base = torch.rand(4, 24, generator=generator, dtype=torch.float64)
    # Twelve concepts that are near-copies of four: cond(W Wᵀ) is in the millions.
    dictionary = base.repeat(3, 1) + 0.01 * torch.rand(12, 24, generator=generator, dtype=torch.float64)
    activations = torch.rand(100, 12, generator=generator, dtype=torch.float64) @ dictionary
    activations = activations + 0.05 * torch.randn(
        activations.shape, generator=generator, dtype=torch.float64
    )
    assert float(torch.linalg.cond(dictionary @ dictionary.T)) > 1e6
    codes = encode(activations, dictionary)
    reference = _scipy_nnls(activations, dictionary)

    def residual(u: np.ndarray) -> np.ndarray:
        return np.linalg.norm(activations.numpy() - u @ dictionary.numpy(), axis=1)

    # Codes may differ where the problem is nearly degenerate; the fit may not.
    np.testing.assert_allclose(residual(codes.numpy()), residual(reference), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(codes.numpy(), reference, atol=1e-4)


@pytest.mark.parametrize("positive", [False, True])
def test_lasso_matches_sklearn_and_meets_the_kkt_conditions(positive: bool) -> None:
    activations, dictionary = _problem(120, 20, 10, seed=2)
    activations = activations - activations.mean()
    dictionary = dictionary / dictionary.norm(dim=1, keepdim=True)
    penalty = 0.3
    codes = encode(activations, dictionary, l1=penalty, positive=positive)
    reference = sparse_encode(
        activations.numpy(),
        dictionary.numpy(),
        algorithm="lasso_cd",
        alpha=penalty,
        positive=positive,
        max_iter=100_000,
    )
    np.testing.assert_allclose(codes.numpy(), reference, atol=1e-5)
    gradient = codes @ dictionary @ dictionary.T - activations @ dictionary.T
    active = codes != 0
    # Optimality: gradient = −λ sign(u) on the support, |gradient| <= λ off it (>= −λ if positive).
    torch.testing.assert_close(gradient[active], -penalty * torch.sign(codes[active]), atol=1e-9, rtol=0)
    if positive:
        assert bool((codes >= 0).all()) and bool((gradient[~active] >= -penalty - 1e-9).all())
    else:
        assert bool((codes < 0).any()) and bool((gradient[~active].abs() <= penalty + 1e-9).all())


def test_codes_do_not_depend_on_the_batch() -> None:
    activations, dictionary = _problem(60, 16, 6, dtype=torch.float32)
    together = encode(activations, dictionary)
    one_by_one = torch.cat([encode(row[None], dictionary) for row in activations])
    torch.testing.assert_close(together, one_by_one, atol=1e-6, rtol=1e-5)


def test_chunked_systems_and_warm_starts_give_the_same_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    activations, dictionary = _problem(90, 16, 6)
    codes = encode(activations, dictionary)
    torch.testing.assert_close(encode(activations, dictionary, init=codes + 0.1), codes, atol=1e-10, rtol=0)
    monkeypatch.setattr(_coding, "_SYSTEM_ELEMENTS", 7 * 36)  # 7 rows per batched solve
    torch.testing.assert_close(encode(activations, dictionary), codes, atol=1e-10, rtol=0)


def test_degenerate_dictionaries() -> None:
    activations, dictionary = _problem(40, 12, 4)
    # An all-zero concept explains nothing: its code stays 0.
    with_zero = torch.cat([dictionary, torch.zeros(1, 12, dtype=torch.float64)])
    codes = encode(activations, with_zero)
    assert bool((codes[:, -1] == 0).all())
    torch.testing.assert_close(codes[:, :-1], encode(activations, dictionary))
    # A duplicated concept makes the codes non-unique (singular Gram), not the fit.
    doubled = torch.cat([dictionary, dictionary[:1]])
    source = activations.clone().requires_grad_()
    codes = differentiable_encode(source, doubled)
    optimum = encode(activations, dictionary) @ dictionary
    # Singular supports fall back to coordinate descent: optimal to its tolerance.
    torch.testing.assert_close(codes.detach() @ doubled, optimum, atol=1e-5, rtol=0)
    codes.sum().backward()
    assert source.grad is not None and bool(torch.isfinite(source.grad).all())


# --- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize(("penalty", "positive"), [(0.0, True), (0.2, False), (0.2, True)])
def test_encode_gradient_matches_finite_differences(penalty: float, positive: bool) -> None:
    activations, dictionary = _problem(3, 6, 4, seed=3)
    activations = (activations - 0.3).requires_grad_()
    codes = encode(activations.detach(), dictionary, l1=penalty, positive=positive)
    assert bool((codes == 0).any()) and bool((codes != 0).any())  # a non-trivial support
    assert torch.autograd.gradcheck(
        lambda a: differentiable_encode(a, dictionary, l1=penalty, positive=positive), (activations,)
    )


def test_encode_gradient_in_closed_form() -> None:
    """On a support S, du_S/da = W_S^T (W_S W_S^T)^-1, checked by hand for one row."""
    activations, dictionary = _problem(1, 8, 4, seed=5)
    source = activations.clone().requires_grad_()
    codes = differentiable_encode(source, dictionary)
    support = (codes[0] != 0).nonzero().squeeze(1)
    assert 0 < support.numel() < 4
    upstream = torch.arange(1.0, 5.0, dtype=torch.float64)
    (codes[0] * upstream).sum().backward()
    selected = dictionary[support]
    expected = upstream[support] @ torch.linalg.inv(selected @ selected.T) @ selected
    assert source.grad is not None
    torch.testing.assert_close(source.grad[0], expected)


@pytest.mark.parametrize("name", list_learners())
def test_differentiable_transform_gradient_matches_finite_differences(name: str) -> None:
    activations, _ = planted_nonnegative(n_samples=80, n_features=8, n_concepts=3, noise=0.3, seed=6)
    options = {"alpha": 0.01} if name == "sparse_coding" else {}
    learner = create_learner(name, 3, **options).fit(activations)
    inputs = activations[:25].double().requires_grad_()
    assert torch.autograd.gradcheck(learner.differentiable_transform, (inputs,), fast_mode=True)
