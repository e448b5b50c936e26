import doctest
import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.decomposition import PCA as SklearnPCA
from sklearn.decomposition import FastICA, sparse_encode

from spyglass import concepts
from spyglass.concepts import (
    ICA,
    NMF,
    PCA,
    KMeans,
    NotFittedError,
    SemiNMF,
    SparseCoding,
    create_learner,
    list_learners,
    match_concepts,
    relative_reconstruction_error,
)
from tests.concepts.planted import planted_nonnegative, planted_signed

LEARNERS = list_learners()


def test_registry_lists_every_learner() -> None:
    assert set(LEARNERS) == {"nmf", "semi_nmf", "pca", "ica", "kmeans", "sparse_coding"}
    assert isinstance(create_learner("nmf", 3, max_iter=10), NMF)


def test_registry_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match=r"unknown dictionary learner 'nfm'.*Did you mean nmf"):
        create_learner("nfm", 3)
    with pytest.raises(TypeError, match=r"pca does not take option\(s\) \['alpha'\]"):
        create_learner("pca", 3, alpha=1.0)


# --- planted concepts -------------------------------------------------------------------


def test_nmf_recovers_planted_concepts() -> None:
    activations, planted = planted_nonnegative(n_samples=500, n_features=64, n_concepts=5)
    nmf = NMF(n_concepts=5).fit(activations)
    match = match_concepts(planted, nmf.components_)
    assert sorted(match.permutation.tolist()) == [0, 1, 2, 3, 4]
    assert float(match.cosines.min()) >= 0.95
    assert float(match.cosines.mean()) >= 0.99


def test_nmf_degrades_gracefully_with_noise() -> None:
    levels = (0.0, 0.5, 1.0, 2.0)  # noise standard deviation, relative to the signal's
    means = []
    for noise in levels:
        cosines = [
            float(match_concepts(planted, NMF(n_concepts=5).fit(activations).components_).cosines.mean())
            for activations, planted in (planted_nonnegative(noise=noise, seed=seed) for seed in range(3))
        ]
        means.append(sum(cosines) / len(cosines))
    assert means[0] >= 0.99
    assert means[1] >= 0.98 and means[2] >= 0.95  # moderate noise: still high
    assert all(later <= earlier + 1e-3 for earlier, later in itertools.pairwise(means)), means
    assert means[-1] < means[0] - 0.02, means  # the noise does hurt


def test_sparse_coding_recovers_planted_atoms() -> None:
    activations, planted = planted_nonnegative(n_samples=500, n_features=64, n_concepts=5)
    coder = SparseCoding(n_concepts=5, alpha=0.05, positive=True).fit(activations)
    assert float(match_concepts(planted, coder.components_).cosines.min()) >= 0.95
    assert float(coder.components_.norm(dim=1).max()) <= 1 + 1e-5


# --- reconstruction ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nmf", "semi_nmf", "pca", "sparse_coding"])
def test_reconstruction_error_goes_down_with_more_concepts(name: str) -> None:
    # 12 planted concepts, 24 features: each added concept can still explain more.
    activations, _ = planted_nonnegative(n_samples=300, n_features=24, n_concepts=12, noise=0.1, density=0.5)
    options = {"alpha": 0.01} if name == "sparse_coding" else {}
    errors = []
    for n_concepts in (2, 4, 8, 16):
        learner = create_learner(name, n_concepts, **options).fit(activations)
        rebuilt = learner.inverse_transform(learner.transform(activations))
        errors.append(float((activations - rebuilt).norm() / activations.norm()))
    assert all(later < earlier for earlier, later in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.5 * errors[0], errors


def test_relative_reconstruction_error_of_a_fitted_nmf() -> None:
    activations, _ = planted_nonnegative(noise=0.5)
    nmf = NMF(n_concepts=5).fit(activations)
    codes = nmf.transform(activations)
    error = relative_reconstruction_error(activations, codes, nmf.components_)
    assert 0.05 < error < 0.5
    # The NNLS codes are optimal for W: sklearn's own codes cannot rebuild better.
    assert error <= nmf.reconstruction_err_ / float(activations.norm()) + 1e-4


# --- each learner against its reference ---------------------------------------------------


def test_pca_matches_sklearn() -> None:
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(200, 12, generator=generator, dtype=torch.float64) @ torch.randn(
        12, 12, generator=generator, dtype=torch.float64
    )
    pca = PCA(n_concepts=4).fit(activations)
    reference = SklearnPCA(n_components=4).fit(activations.numpy())
    np.testing.assert_allclose(pca.components_.numpy(), reference.components_, atol=1e-10)
    np.testing.assert_allclose(pca.mean_.numpy(), reference.mean_, atol=1e-12)
    codes = pca.transform(activations)
    np.testing.assert_allclose(codes.numpy(), reference.transform(activations.numpy()), atol=1e-10)
    np.testing.assert_allclose(
        pca.inverse_transform(codes).numpy(), reference.inverse_transform(codes.numpy()), atol=1e-10
    )
    np.testing.assert_allclose(
        pca.explained_variance_ratio_.numpy(), reference.explained_variance_ratio_, atol=1e-12
    )
    # Orthonormal concepts, codes of decreasing variance.
    torch.testing.assert_close(pca.components_ @ pca.components_.T, torch.eye(4, dtype=torch.float64))
    variances = codes.var(dim=0)
    assert bool((variances[1:] <= variances[:-1]).all())


def test_ica_matches_sklearn_and_unmixes_sources() -> None:
    generator = torch.Generator().manual_seed(0)
    sources = torch.randn(600, 3, generator=generator, dtype=torch.float64) ** 3  # heavy-tailed
    activations = sources @ torch.randn(3, 6, generator=generator, dtype=torch.float64)
    ica = ICA(n_concepts=3, seed=1).fit(activations)
    reference = FastICA(n_components=3, whiten="unit-variance", max_iter=500, random_state=1)
    reference.fit(activations.numpy())
    codes = ica.transform(activations)
    np.testing.assert_allclose(codes.numpy(), reference.transform(activations.numpy()), atol=1e-8)
    torch.testing.assert_close(ica.inverse_transform(codes), activations)
    correlation = torch.corrcoef(torch.cat([sources.T, codes.T]))[:3, 3:].abs()
    assert bool((correlation.amax(dim=1) > 0.99).all())


def test_kmeans_codes_are_the_nearest_centroid() -> None:
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(300, 5, generator=generator)
    kmeans = KMeans(n_concepts=4, seed=3).fit(activations)
    reference = SklearnKMeans(n_clusters=4, n_init=4, random_state=3).fit(activations.numpy())
    np.testing.assert_allclose(kmeans.components_.numpy(), reference.cluster_centers_, atol=1e-5)
    codes = kmeans.transform(activations)
    assert set(codes.unique().tolist()) == {0.0, 1.0}
    assert bool((codes.sum(dim=1) == 1).all())
    assert codes.argmax(dim=1).tolist() == reference.predict(activations.numpy()).tolist()
    torch.testing.assert_close(kmeans.inverse_transform(codes), kmeans.components_[codes.argmax(dim=1)])
    assert kmeans.temperature_ == pytest.approx(reference.inertia_ / 300, rel=1e-4)


def test_kmeans_soft_codes_sum_to_one_and_harden_with_temperature() -> None:
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(200, 4, generator=generator)
    hard = KMeans(n_concepts=3).fit(activations).transform(activations)
    previous_gap = math.inf
    for temperature in (10.0, 1.0, 0.1, 0.001):
        soft = (
            KMeans(n_concepts=3, temperature=temperature)
            .fit(activations)
            .differentiable_transform(activations)
        )
        torch.testing.assert_close(soft.sum(dim=1), torch.ones(200))
        assert soft.argmax(dim=1).tolist() == hard.argmax(dim=1).tolist()
        gap = float((soft - hard).abs().max())
        assert gap < previous_gap
        previous_gap = gap
    assert previous_gap < 0.05


def test_sparse_coding_codes_match_sklearn_sparse_encode() -> None:
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(150, 16, generator=generator, dtype=torch.float64)
    for positive in (False, True):
        coder = SparseCoding(n_concepts=10, alpha=0.5, positive=positive).fit(activations)
        codes = coder.transform(activations)
        reference = sparse_encode(
            activations.numpy(),
            coder.components_.numpy(),
            algorithm="lasso_cd",
            alpha=0.5,
            positive=positive,
            max_iter=100_000,
        )
        np.testing.assert_allclose(codes.numpy(), reference, atol=1e-4)
        assert 0.2 < float((codes == 0).float().mean()) < 1.0
        assert bool((codes >= 0).all()) if positive else bool((codes < 0).any())

        def objective(u: torch.Tensor, components: torch.Tensor = coder.components_) -> torch.Tensor:
            return 0.5 * (activations - u @ components).square().sum(dim=1) + 0.5 * u.abs().sum(dim=1)

        # Row by row, ours is at least as good as the reference (an exact solution).
        assert bool((objective(codes) <= objective(torch.from_numpy(reference)) + 1e-12).all())


def test_sparse_coding_fit_lowers_its_objective() -> None:
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(150, 16, generator=generator)
    objectives = [
        SparseCoding(n_concepts=6, max_iter=steps, tol=0).fit(activations).objective_ for steps in (1, 3, 10)
    ]
    assert objectives[0] > objectives[1] > objectives[2]


# --- Semi-NMF ---------------------------------------------------------------------------


def test_semi_nmf_fits_signed_activations_with_non_negative_codes() -> None:
    activations, _ = planted_signed()
    with pytest.raises(ValueError, match="SemiNMF"):
        NMF(n_concepts=4).fit(activations)
    semi = SemiNMF(n_concepts=4).fit(activations)
    codes = semi.transform(activations)
    assert bool((codes >= 0).all())
    assert bool((semi.components_ < 0).any())
    assert relative_reconstruction_error(activations, codes, semi.components_) < 0.05


def test_semi_nmf_error_never_increases_over_iterations() -> None:
    activations, _ = planted_signed(seed=1)
    activations = activations + 0.3 * torch.randn(
        activations.shape, generator=torch.Generator().manual_seed(2)
    )
    errors = [
        SemiNMF(n_concepts=3, max_iter=steps, tol=0).fit(activations).reconstruction_err_
        for steps in (1, 2, 5, 20, 80, 200)
    ]
    assert all(later <= earlier * (1 + 1e-6) for earlier, later in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.9 * errors[0], errors


# --- the contract of every learner ------------------------------------------------------


def _data(name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    activations, _ = planted_nonnegative(
        n_samples=120, n_features=10, n_concepts=3, noise=0.3, seed=4, dtype=dtype
    )
    return activations


def _options(name: str) -> dict[str, float]:
    return {"alpha": 0.01} if name == "sparse_coding" else {}


@pytest.mark.parametrize("name", LEARNERS)
def test_contract(name: str) -> None:
    activations = _data(name)
    learner = create_learner(name, 3, **_options(name))
    assert not learner.is_fitted and not hasattr(learner, "components_")
    assert learner.fit(activations) is learner
    components = learner.components_
    assert components.shape == (3, 10) and components.dtype == torch.float32
    assert learner.n_features_in_ == 10
    codes = learner.transform(activations)
    assert codes.shape == (120, 3) and codes.dtype == torch.float32
    assert bool(torch.isfinite(codes).all()) and not codes.requires_grad
    torch.testing.assert_close(learner.fit_transform(activations), codes)
    # New rows, fewer than n_concepts, are fine once fitted.
    assert learner.transform(activations[:2]).shape == (2, 3)
    rebuilt = learner.inverse_transform(codes)
    assert rebuilt.shape == activations.shape and rebuilt.dtype == torch.float32
    assert (
        relative_reconstruction_error(activations, codes, components, mean=getattr(learner, "mean_", None))
        < 1
    )
    # Two fits with the same seed agree exactly; float64 in, float64 out.
    torch.testing.assert_close(
        create_learner(name, 3, **_options(name)).fit(activations).components_, components, rtol=0, atol=0
    )
    assert learner.transform(activations.double()).dtype == torch.float64
    assert (
        create_learner(name, 3, **_options(name)).fit(activations.double()).components_.dtype == torch.float64
    )


@pytest.mark.parametrize("name", LEARNERS)
def test_differentiable_transform_carries_a_gradient(name: str) -> None:
    activations = _data(name).requires_grad_()
    learner = create_learner(name, 3, **_options(name)).fit(activations.detach())
    codes = learner.differentiable_transform(activations)
    if name != "kmeans":  # KMeans documents soft codes here
        torch.testing.assert_close(
            codes.detach(), learner.transform(activations.detach()), atol=1e-5, rtol=1e-5
        )
    weights = torch.randn(codes.shape, generator=torch.Generator().manual_seed(0))
    (codes * weights).sum().backward()
    assert activations.grad is not None and activations.grad.shape == activations.shape
    assert bool(torch.isfinite(activations.grad).all()) and float(activations.grad.abs().max()) > 0
    # inverse_transform is differentiable in U.
    free_codes = codes.detach().requires_grad_()
    learner.inverse_transform(free_codes).sum().backward()
    assert free_codes.grad is not None


@pytest.mark.parametrize("name", LEARNERS)
def test_unfitted_use_is_a_clear_error(name: str) -> None:
    learner = create_learner(name, 3)
    activations = _data(name)
    calls = {
        "transform": lambda: learner.transform(activations),
        "differentiable_transform": lambda: learner.differentiable_transform(activations),
        "inverse_transform": lambda: learner.inverse_transform(torch.zeros(2, 3)),
        "components_": lambda: learner.components_,
        "n_features_in_": lambda: learner.n_features_in_,
    }
    for call in calls.values():
        with pytest.raises(NotFittedError, match=r"not fitted yet; call fit\(activations\)"):
            call()
    assert issubclass(NotFittedError, ValueError)


def _with_nan(activations: torch.Tensor) -> torch.Tensor:
    spoiled = activations.clone()
    spoiled[7, 3] = math.nan
    return spoiled


@pytest.mark.parametrize("name", LEARNERS)
def test_bad_input_is_a_clear_error(name: str) -> None:
    learner = create_learner(name, 3, **_options(name))
    activations = _data(name)
    with pytest.raises(ValueError, match=r"at least n_concepts=3 rows.*got 2"):
        learner.fit(activations[:2])
    with pytest.raises(ValueError, match=r"2-D float tensor.*got shape \(10,\).*\[None\]"):
        learner.fit(activations[0])
    with pytest.raises(ValueError, match=r"got shape \(2, 10, 4, 3\).*permute\(0, 2, 3, 1\)"):
        learner.fit(torch.rand(2, 10, 4, 3))
    with pytest.raises(ValueError, match=r"got shape \(2, 60, 10\).*token"):
        learner.fit(torch.rand(2, 60, 10))
    with pytest.raises(ValueError, match="got 1 NaN or infinite"):
        learner.fit(_with_nan(activations))
    with pytest.raises(TypeError, match=r"got dtype torch.int64.*\.float\(\)"):
        learner.fit(torch.ones(20, 10, dtype=torch.long))
    with pytest.raises(TypeError, match=r"got ndarray.*torch.from_numpy"):
        learner.fit(activations.numpy())  # type: ignore[arg-type]
    learner.fit(activations)
    with pytest.raises(ValueError, match=r"got 9 features.*fitted on 10"):
        learner.transform(activations[:, :9])
    with pytest.raises(ValueError, match="got 1 NaN"):
        learner.differentiable_transform(_with_nan(activations))
    with pytest.raises(
        ValueError, match=r"codes must be a 2-D float tensor \(n_samples, 3\).*got shape \(5, 4\)"
    ):
        learner.inverse_transform(torch.zeros(5, 4))


def test_nmf_rejects_negative_activations_and_suggests_alternatives() -> None:
    activations = _data("nmf")
    activations[0, 0] = -0.5
    with pytest.raises(ValueError, match=r"non-negative activations.*1 negative value.*-0\.5.*SemiNMF.*PCA"):
        NMF(n_concepts=3).fit(activations)


@pytest.mark.parametrize("cls", [PCA, ICA])
def test_undercomplete_learners_refuse_more_concepts_than_features(cls: type) -> None:
    with pytest.raises(ValueError, match="at most n_features concepts; got n_concepts=12 for 10 features"):
        cls(n_concepts=12).fit(_data("pca"))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # only the shape matters here
def test_overcomplete_nmf_is_allowed() -> None:
    activations = _data("nmf")
    assert NMF(n_concepts=12, max_iter=50).fit(activations).components_.shape == (12, 10)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_n_concepts_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="n_concepts must be a positive int"):
        NMF(n_concepts=bad)  # type: ignore[arg-type]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        PCA(3, seed=-1)
    with pytest.raises(ValueError, match="init must be one of"):
        NMF(3, init="svd")
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        SparseCoding(3, alpha=-1.0)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        KMeans(3, temperature=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", LEARNERS)
def test_keeps_the_device_of_its_input(name: str) -> None:
    activations = _data(name).cuda()
    learner = create_learner(name, 3, **_options(name)).fit(activations)
    assert learner.components_.device == activations.device
    codes = learner.transform(activations)
    assert codes.device == activations.device
    torch.testing.assert_close(codes.cpu(), learner.transform(activations.cpu()), atol=1e-4, rtol=1e-4)
    assert learner.differentiable_transform(activations).device == activations.device


@pytest.mark.parametrize(
    "module",
    [concepts.nmf, concepts.linear, concepts.kmeans, concepts.sparse_coding, concepts._registry],
    ids=lambda module: module.__name__.rsplit(".", 1)[-1],
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
