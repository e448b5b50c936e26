"""The bad-input contract of :mod:`spyglass.models`: the wrapper's arguments, ``load``'s device and weights.

Every malformed value must be refused by spyglass with a sentence, the network left as found
(the wrapper runs one blank forward pass to check the class names: it must not move
batch-norm statistics nor the network's train/eval mode).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from spyglass import models
from spyglass.models import VisionModel
from tests.bad_input.contract import accepts, count, refuses, spyglass_error
from tests.tiny import tiny_cnn, tiny_images

GOOD: dict[str, Any] = {
    "input_size": (32, 32),
    "mean": (0.5, 0.5, 0.5),
    "std": (0.25, 0.25, 0.25),
    "class_names": [f"c{i}" for i in range(5)],
}

not_finite = st.sampled_from([math.nan, math.inf, -math.inf])
bad_sizes = st.one_of(
    st.tuples(st.integers(max_value=0), st.integers(1, 64)),
    st.tuples(st.integers(1, 64), st.integers(max_value=0)),
    st.tuples(st.floats(allow_nan=True).filter(lambda x: not float(x).is_integer()), st.just(32)),
    st.lists(st.integers(1, 64), max_size=1).map(tuple),
    st.lists(st.integers(1, 64), min_size=3, max_size=4).map(tuple),
    st.sampled_from([None, "32x32", 32, (True, True), ("32", "32"), {"h": 32}]),
)
bad_means = st.one_of(
    st.tuples(not_finite, st.just(0.5), st.just(0.5)),
    st.lists(st.floats(0, 1), max_size=2).map(tuple),
    st.lists(st.floats(0, 1), min_size=4, max_size=5).map(tuple),
    st.sampled_from(["abc", None, 0.5, ("a", "b", "c"), (True, False, True)]),
)
bad_stds = st.one_of(
    bad_means,
    st.tuples(st.floats(max_value=0.0, allow_nan=False), st.just(0.5), st.just(0.5)),
)
bad_names = st.one_of(
    st.text(max_size=6),
    st.just([]),
    st.lists(st.text(max_size=3), min_size=1, max_size=4),  # fewer than the 5 classes
    st.lists(st.text(max_size=3), min_size=6, max_size=8),  # more
    st.lists(st.integers(), min_size=5, max_size=5),
    st.sampled_from([None, 5, {"a": 1}]),
)


def _wrap(network: nn.Module, **changes: object) -> VisionModel:
    return VisionModel(network, **{**GOOD, **changes})


@given(network=st.sampled_from([None, "abc", 5, torch.zeros(3), lambda x: x, nn.Module]))
def test_the_network_must_be_a_module(network: object) -> None:
    refuses("models.VisionModel", lambda: VisionModel(network, **GOOD), match="network")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("argument", "strategy"),
    [("input_size", bad_sizes), ("mean", bad_means), ("std", bad_stds), ("class_names", bad_names)],
)
def test_malformed_wrapper_arguments_are_refused(argument: str, strategy: st.SearchStrategy[object]) -> None:
    @given(value=strategy)
    def check(value: object) -> None:
        network = tiny_cnn()
        refuses("models.VisionModel", lambda: _wrap(network, **{argument: value}), model=network)

    check()


def test_the_blank_forward_leaves_the_network_as_found() -> None:
    network = tiny_cnn()  # train mode, fresh batch-norm statistics
    model = accepts("models.VisionModel", lambda: _wrap(network), model=network)
    assert isinstance(model, VisionModel) and network.training
    assert torch.isfinite(model(tiny_images(2))).all()


def test_a_network_that_does_not_fit_the_input_size_is_refused_at_once() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 5))
    refuses("models.VisionModel", lambda: _wrap(flat, input_size=(16, 16)), match="input_size")
    pooled = nn.Sequential(nn.Conv2d(3, 5, 1))  # (N, 5, H, W): no logits
    refuses("models.VisionModel", lambda: _wrap(pooled), match="shape (N, C)")


def test_a_network_on_the_meta_device_is_refused() -> None:
    with torch.device("meta"):
        network = tiny_cnn()
    refuses("models.VisionModel", lambda: _wrap(network), match="meta device")


@given(
    device=st.one_of(
        st.sampled_from(["nope", "", "gpu", "cuda:x", "meta", "cpu:0:1", "tpu"]),
        st.integers(),
        st.just(None).map(lambda _: 1.5),
    )
)
def test_load_refuses_a_device_this_machine_lacks_before_loading(device: object) -> None:
    # 'nope' would fail deep inside torch, 'cuda' with "Found no NVIDIA driver": a sentence instead.
    refuses("models.load", lambda: models.load("efficientnet_lite0", device=device), match="device")  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_load_on_cuda_without_a_gpu_says_so() -> None:
    refuses("models.load", lambda: models.load(device="cuda"), match="no CUDA GPU")


def test_a_weights_file_that_is_not_a_state_dict_is_named(tmp_path: Path) -> None:
    pickled = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), pickled)  # a whole module: weights_only cannot unpickle it
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a checkpoint")
    a_list = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], a_list)
    misshapen = tmp_path / "misshapen.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, misshapen)
    for path in (pickled, garbage, a_list, misshapen):
        refuses("models.load", lambda path=path: models.load("resnet18", weights=path), match=str(path))
    refuses("models.load", lambda: models.load("resnet18", weights=tmp_path), match="not a file")
    refuses("models.load", lambda: models.load("resnet18", weights=tmp_path / "absent.pt"), match="exist")
    refuses("models.load", lambda: models.load("resnet18", weights=3), match="path")  # type: ignore[arg-type]


@given(name=st.one_of(st.text(max_size=8), st.sampled_from([None, 5, "timm/", "timm/nope"])))
def test_load_refuses_unknown_names(name: object) -> None:
    known = isinstance(name, str) and (name in models.available_models() or name.startswith("timm/"))
    if known and name not in ("timm/", "timm/nope"):
        return  # a real name (hypothesis may draw one): not bad input
    refuses("models.load", lambda: models.load(name))  # type: ignore[arg-type]


@given(
    mean=st.tuples(*[st.floats(allow_nan=True, allow_infinity=True)] * 3),
    std=st.tuples(*[st.floats(allow_nan=True, allow_infinity=True)] * 3),
)
def test_any_normalisation_is_refused_or_gives_finite_logits(
    mean: tuple[float, float, float], std: tuple[float, float, float]
) -> None:
    network = tiny_cnn().eval()
    try:
        model = _wrap(network, mean=mean, std=std)
    except Exception as error:
        assert spyglass_error(error), f"{type(error).__name__}: {error}"
        count("models.VisionModel", "refused")
        return
    logits = model(tiny_images(2))
    # Huge but finite values may overflow in the network: that is the network's range, not an input error.
    if all(abs(m) < 1e6 for m in mean) and all(1e-6 < s < 1e6 for s in std):
        assert torch.isfinite(logits).all()
    count("models.VisionModel", "accepted")
