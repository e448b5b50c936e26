"""The bad-input contract of :mod:`spyglass.concepts`, driven by the registry of dictionary learners.

Every registered learner gets malformed activations (to ``fit`` and, fitted, to ``transform``),
malformed codes (to ``inverse_transform``) and malformed options: each keyword option of its
constructor gets the bad values of its annotated type (:data:`BAD_OPTIONS`). A new learner is
covered without a line here; a new *type* of option fails :func:`test_every_option_type_has_bad_values`
until its bad values are written down.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spyglass import concepts
from spyglass.concepts import Craft, class_concepts, strategic_cluster_graph
from spyglass.registry import keyword_options
from tests.bad_input.contract import accepts, either, refuses
from tests.tiny import tiny_images, tiny_model

LEARNERS = concepts.list_learners()
N_CONCEPTS = 2
# Cheap settings, so that the contract stays fast; every learner takes max_iter but PCA.
CHEAP: dict[str, Any] = {"max_iter": 20, "n_init": 1}

# Bad values of each option type the learners annotate (the annotation string, as written).
BAD_OPTIONS: dict[str, list[object]] = {
    "int": [-1, 0, 2.5, "3", True, None, 2**70],
    "float": [math.nan, math.inf, -1.0, "0.1", None, True],
    "float | None": [math.nan, math.inf, -1.0, 0.0, "0.1"],
    "bool": ["yes", 1, None],
    "str | None": ["nonsense", 5, math.nan],
}


def test_the_registry_is_enumerated() -> None:
    # The contract below covers whatever is registered: make sure that is not nothing.
    assert {"nmf", "pca", "ica", "kmeans"} <= set(LEARNERS)


def _options(name: str) -> dict[str, Any]:
    taken = keyword_options(concepts.learner_class(name), positional=("n_concepts",))
    return {key: value for key, value in CHEAP.items() if key in taken}


def _learner(name: str, **changes: Any) -> concepts.DictionaryLearner:
    return concepts.create_learner(name, N_CONCEPTS, **{**_options(name), **changes})


def _activations(n: int = 24, features: int = 6, seed: int = 0) -> torch.Tensor:
    """Non-negative (NMF needs it), varied, well-scaled activations."""
    return torch.rand(n, features, generator=torch.Generator().manual_seed(seed)) + 0.05


def _annotations(name: str) -> dict[str, str]:
    cls = concepts.learner_class(name)
    found: dict[str, str] = {}
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            for key, parameter in inspect.signature(vars(klass)["__init__"]).parameters.items():
                if parameter.kind == parameter.KEYWORD_ONLY and key not in found:
                    found[key] = str(parameter.annotation)
    return found


@pytest.mark.parametrize("name", LEARNERS)
def test_every_option_type_has_bad_values(name: str) -> None:
    annotations = _annotations(name)
    assert annotations, f"{name}: no keyword option found, so none would be tested"
    missing = {key: kind for key, kind in annotations.items() if kind not in BAD_OPTIONS}
    assert not missing, f"{name}: write the bad values of these option types into BAD_OPTIONS: {missing}"


@pytest.mark.parametrize("name", LEARNERS)
def test_bad_options_are_refused(name: str) -> None:
    for key, kind in _annotations(name).items():
        for value in BAD_OPTIONS[kind]:
            if key == "seed" and value == 0:
                continue  # seed 0 is a seed
            refuses(f"concepts.{name}", lambda key=key, value=value: _learner(name, **{key: value}))
    for n_concepts in (0, -1, 2.5, "2", True, None):
        refuses(f"concepts.{name}", lambda n=n_concepts: concepts.create_learner(name, n))
    refuses(f"concepts.{name}", lambda: concepts.create_learner(name, 2, no_such_option=1))


matrices = st.one_of(
    st.sampled_from(
        ["nan", "inf", "huge", "identical", "zeros", "1-D", "3-D", "empty", "int", "numpy", "list"]
    ),
)


def _malformed(kind: str) -> object:
    good = _activations()
    if kind == "nan":
        return good.index_put((torch.tensor([3]), torch.tensor([1])), torch.tensor(math.nan))
    if kind == "inf":
        return good.index_put((torch.tensor([0]), torch.tensor([0])), torch.tensor(math.inf))
    if kind == "huge":  # used to be accepted, and gave garbage
        return good * 1e30
    if kind == "identical":
        return good[:1].expand(24, -1).clone()
    if kind == "zeros":
        return torch.zeros(24, 6)
    if kind == "1-D":
        return good[0]
    if kind == "3-D":
        return good.reshape(4, 6, 6)
    if kind == "empty":
        return good[:0]
    if kind == "int":
        return (good * 10).long()
    if kind == "numpy":
        return good.numpy()
    return good.tolist()


@pytest.mark.parametrize("name", LEARNERS)
def test_malformed_activations_are_refused_by_fit(name: str) -> None:
    @given(kind=matrices)
    def check(kind: str) -> None:
        refuses(f"concepts.{name}.fit", lambda: _learner(name).fit(_malformed(kind)))  # type: ignore[arg-type]

    check()
    refuses(f"concepts.{name}.fit", lambda: _learner(name).fit(_activations(n=1)), match="rows")


@pytest.mark.parametrize("name", LEARNERS)
def test_a_fitted_learner_refuses_malformed_input(name: str) -> None:
    learner = accepts(f"concepts.{name}.fit", lambda: _learner(name).fit(_activations()))
    assert isinstance(learner, concepts.DictionaryLearner)
    accepts(f"concepts.{name}.transform", lambda: learner.transform(_activations(n=5, seed=1)))
    accepts(f"concepts.{name}.transform", lambda: learner.transform(_activations(n=5, seed=1).double()))

    @given(kind=st.sampled_from(["nan", "inf", "huge", "1-D", "3-D", "empty", "int", "numpy", "list"]))
    def check(kind: str) -> None:
        refuses(f"concepts.{name}.transform", lambda: learner.transform(_malformed(kind)))  # type: ignore[arg-type]

    check()
    refuses(
        f"concepts.{name}.transform", lambda: learner.transform(_activations(features=5)), match="features"
    )
    for codes in (torch.rand(3, N_CONCEPTS + 1), torch.full((3, N_CONCEPTS), math.nan), np.zeros((3, 2))):
        refuses(f"concepts.{name}.inverse_transform", lambda codes=codes: learner.inverse_transform(codes))  # type: ignore[arg-type]
    unfitted = _learner(name)
    refuses(f"concepts.{name}.transform", lambda: unfitted.transform(_activations()), match="not fitted")


@pytest.mark.parametrize("name", [n for n in LEARNERS if concepts.learner_class(n).requires_nonnegative])
def test_a_non_negative_dictionary_refuses_to_code_negative_activations(name: str) -> None:
    learner = _learner(name).fit(_activations())
    refuses(f"concepts.{name}.transform", lambda: learner.transform(-_activations(n=3)), match="non-negative")
    refuses(
        f"concepts.{name}.differentiable_transform",
        lambda: learner.differentiable_transform(-_activations(n=3)),
        match="non-negative",
    )


@pytest.mark.parametrize("name", [n for n in LEARNERS if concepts.learner_class(n).max_concepts_is_features])
def test_rank_deficient_activations_are_refused_by_affine_learners(name: str) -> None:
    # Rank 1 after centring: FastICA divided by zero deep inside scikit-learn.
    line = torch.linspace(0, 1, 24)[:, None] * torch.rand(1, 6, generator=torch.Generator().manual_seed(0))
    if name == "ica":
        refuses(f"concepts.{name}.fit", lambda: _learner(name).fit(line), match="rank")
    else:
        codes = accepts(f"concepts.{name}.fit", lambda: _learner(name).fit(line).transform(line))
        assert isinstance(codes, torch.Tensor) and codes.shape == (24, N_CONCEPTS)


@pytest.fixture(scope="module")
def fitted_craft() -> Craft:
    model = tiny_model()
    return Craft(model, layer="2", n_concepts=2, patch_size=16, batch_size=8, progress=False).fit(
        tiny_images(4), 1
    )


@given(
    options=st.one_of(
        st.fixed_dictionaries({"min_dist": st.sampled_from([math.nan, math.inf, -0.1, 1.5, "0.1"])}),
        st.fixed_dictionaries({"n_neighbors": st.sampled_from([1, 0, 2.5, "15"])}),
        st.fixed_dictionaries({"min_share": st.sampled_from([math.nan, -0.1, 1.5])}),
        st.fixed_dictionaries({"seed": st.sampled_from([-1, 2**64, 1.5])}),
    )
)
def test_strategic_cluster_graph_refuses_bad_options(fitted_craft: Craft, options: dict[str, object]) -> None:
    importance = torch.rand(6, 2)
    refuses(
        "concepts.strategic_cluster_graph",
        lambda: strategic_cluster_graph(fitted_craft, importance=importance, **options),  # type: ignore[arg-type]
    )


def test_strategic_cluster_graph_refuses_what_is_not_a_craft(fitted_craft: Craft) -> None:
    importance = torch.rand(6, 2)
    for craft in ("abc", None):
        refuses(
            "concepts.strategic_cluster_graph",
            lambda craft=craft: strategic_cluster_graph(craft, importance=importance),  # type: ignore[arg-type]
            match="Craft",
        )
    unfitted = Craft(tiny_model(), layer="2", n_concepts=2, patch_size=16, progress=False)
    refuses(
        "concepts.strategic_cluster_graph",
        lambda: strategic_cluster_graph(unfitted, tiny_images(4)),
        match="not fitted",
    )
    for bad in (torch.rand(6, 3), torch.rand(3, 2), torch.full((6, 2), math.nan), np.zeros((6, 2))):
        refuses(
            "concepts.strategic_cluster_graph",
            lambda bad=bad: strategic_cluster_graph(fitted_craft, importance=bad),  # type: ignore[arg-type]
        )


CRAFT_BAD: list[dict[str, object]] = [
    {"n_concepts": 0},
    {"n_concepts": 2.5},
    {"patch_size": 0},
    {"patch_size": "16"},
    {"dictionary": "nope"},
    {"dictionary": 5},
    {"dictionary_options": {"no_such": 1}},
    {"dictionary_options": "max_iter=5"},
    {"layer": "no.such.layer"},
    {"layer": 5},
    {"stride": 0},
    {"batch_size": 0},
    {"seed": -1},
    {"input_size": (0, 32)},
]


@pytest.mark.parametrize("options", CRAFT_BAD, ids=lambda o: ",".join(f"{k}={v!r}" for k, v in o.items()))
def test_craft_refuses_bad_options(options: dict[str, object]) -> None:
    model = tiny_model()
    settings: dict[str, Any] = {"layer": "2", "n_concepts": 2, "patch_size": 16, "progress": False, **options}
    refuses("concepts.Craft", lambda: Craft(model, **settings), model=model)


CLASS_CONCEPTS_BAD: list[dict[str, object]] = [
    {"importance": "nope"},
    {"importance_options": "nb_design=8"},
    {"importance_options": {"nb_desing": 8}},
    {"importance_options": {"seed": 1}},
    {"n_crops": 0},
    {"n_maps": -1},
    {"render": "yes"},
    {"maco_steps": 0},
    {"maco_size": 8},
    {"min_share": math.nan},
    {"seed": 2**40},
    {"batch_size": 0},
    {"strategic": True},  # with fewer than 4 images
]


@pytest.mark.parametrize(
    "options", CLASS_CONCEPTS_BAD, ids=lambda o: ",".join(f"{k}={v!r}" for k, v in o.items())
)
def test_class_concepts_refuses_bad_options_before_any_work(options: dict[str, object]) -> None:
    model = tiny_model()
    settings: dict[str, Any] = {"layer": "2", "n_concepts": 2, "patch_size": 16, "render": False, **options}
    refuses(
        "concepts.class_concepts",
        lambda: class_concepts(model, tiny_images(3), 1, progress=False, **settings),
        model=model,
    )


any_matrix = arrays(
    np.float32,
    st.tuples(st.integers(1, 12), st.integers(1, 5)),
    elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
)
# Mostly valid: the values real activations take, signed or not, often degenerate (few rows).
plausible_matrix = arrays(
    np.float32,
    st.tuples(st.integers(1, 12), st.integers(1, 5)),
    elements=st.one_of(st.floats(0, 100, width=32), st.floats(-100, 100, width=32)),
)


@pytest.mark.parametrize("name", LEARNERS)
def test_any_matrix_is_refused_or_factorised_finitely(name: str) -> None:
    @given(matrix=st.one_of(any_matrix, plausible_matrix), n_concepts=st.integers(1, 3))
    def check(matrix: np.ndarray, n_concepts: int) -> None:
        activations = torch.from_numpy(matrix)
        learner = concepts.create_learner(name, n_concepts, **_options(name))
        either(f"concepts.{name}.fit_transform", lambda: learner.fit_transform(activations))

    check()


def test_craft_takes_float64_images_as_the_model_dtype() -> None:
    """float64 (what ``torch.from_numpy`` gives) is converted to the model's dtype, as for the methods."""
    model = tiny_model()
    images = tiny_images(8)
    craft = Craft(model, layer="2", n_concepts=2, patch_size=16, batch_size=8, progress=False)
    fitted = accepts("concepts.Craft.fit", lambda: craft.fit(images.double(), class_id=0), model=model)
    reference = Craft(model, layer="2", n_concepts=2, patch_size=16, batch_size=8, progress=False)
    reference.fit(images, class_id=0)
    codes = accepts("concepts.Craft.transform", lambda: fitted.transform(images.double()), model=model)
    assert codes.dtype == torch.float32
    torch.testing.assert_close(codes, reference.transform(images))
