"""Stability of attribution maps: AverageStability, MeGe and ReCo, and a default ``train_fn``.

- :class:`AverageStability` (Bhatt et al. 2020, "average sensitivity"): how far a map moves
  when the image moves a little.
- :class:`MeGe` and :class:`ReCo` (Fel, Vigouroux, Cadène & Serre 2022): how far the maps of
  one image move between models trained on different folds of the data, i.e. whether the
  explanation is a property of the task or an accident of one training run.

Why our own: these are short once the engines exist, and the reference implementations
tie them to Keras (xplique) or to their own training loops. Here the retraining is the
user's ``train_fn`` (with :class:`HeadFineTuning` as a cheap default), explanations come
from any spyglass method, and flat maps (whose rank correlation is undefined) are
counted and dropped explicitly instead of silently turning a mean into NaN.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spyglass import attributions
from spyglass.attributions import Attribution
from spyglass.engines.forward import batched_forward
from spyglass.metrics._base import Explainer, Metric, check_images_targets, check_maps, register
from spyglass.metrics._stats import pearson_rows, spearman_rows, youden_index
from spyglass.models.hooks import hooked
from spyglass.progress import progress_bar
from spyglass.validation import (
    check_batch_size,
    check_float,
    check_images,
    check_int,
    check_positive_float,
    check_seed,
    check_targets,
)

__all__ = [
    "AlgorithmicStability",
    "AverageStability",
    "HeadFineTuning",
    "MeGe",
    "ReCo",
    "StabilityReport",
    "TrainFn",
]

TrainFn = Callable[[Tensor, Tensor], nn.Module]
"""``train_fn(train_images (n, 3, H, W), train_labels (n,)) -> model``: one training run."""
MethodSpec = str | Callable[[nn.Module], Explainer]
"""A registered method name, or ``model -> explainer`` (e.g. ``lambda m: Saliency(m)``)."""


def _check_explainer(method: object) -> Explainer:
    if not callable(method):
        raise TypeError(
            f"method must be callable (images, targets) -> maps (N, H, W), e.g. a spyglass attribution "
            f"method; got {type(method).__name__}"
        )
    return method


@register("stability")
class AverageStability(Metric):
    r"""AverageStability: how much a map moves under small input noise (lower is better).

    Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model Explanations",
    IJCAI 2020 (their average sensitivity). For each image ``x``, ``nb_samples`` noisy
    copies :math:`x + \delta`, :math:`\delta \sim \mathcal U[-r, r]` per pixel and channel
    (clipped to [0, 1]), are explained, and

    .. math:: \mathrm{AS}(x) = \mathbb E_\delta\, d\big(\phi(x), \phi(x + \delta)\big),
              \qquad d(a, b) = \big\lVert z(a) - z(b) \big\rVert_2 / \sqrt{HW}
              = \sqrt{2\,(1 - \rho(a, b))}

    with :math:`z` the map standardised to mean 0 and variance 1 and :math:`\rho` the
    Pearson correlation. The distance is our choice (the paper leaves it open): methods
    give maps in different units (logits, Sobol indices, RISE's mean score), and a raw
    :math:`L_2` distance would rank them by scale; this one is scale- and offset-free and
    lies in [0, 2]. A flat map (no ranking at all) has no standardisation: its distances
    are NaN and are left out of the means (see :meth:`distances` to count them).

    Cost: ``nb_samples`` calls of the method on all images.

    Parameters
    ----------
    method
        The attribution method (any callable ``(images, targets) -> maps``).
    images, targets
        ``(N, 3, H, W)`` in [0, 1]; an int or ``(N,)`` class indices.
    radius
        ``r``, the half-width of the uniform noise, in pixel units ([0, 1] images).
    nb_samples
        Noisy copies of each image.
    seed
        Seeds the noise.

    Examples
    --------
    >>> import torch
    >>> from spyglass import attributions, metrics, models
    >>> saliency = attributions.Saliency(models.load())
    >>> images = torch.rand(2, 3, 224, 224)
    >>> stability = metrics.AverageStability(saliency, images, 1, nb_samples=3)
    >>> 0.0 <= stability() <= 2.0
    True
    """

    higher_is_better = False

    def __init__(
        self,
        method: Explainer,
        images: Tensor,
        targets: int | Tensor,
        *,
        radius: float = 0.1,
        nb_samples: int = 20,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        self.method = _check_explainer(method)
        model = getattr(method, "model", None)
        bound = model if isinstance(model, nn.Module) else nn.Module()  # class range known only from a model
        self.images, self.targets = check_images_targets(images, targets, bound)
        check_float(radius, "radius", minimum=0, maximum=1, low_open=True, hint="pixel units")
        self.radius = float(radius)
        self.nb_samples = check_int(nb_samples, "nb_samples", 1)
        self.seed = check_seed(seed)
        self.progress = progress

    @classmethod
    def for_method(
        cls, method: Attribution, images: Tensor, targets: int | Tensor, **options: Any
    ) -> AverageStability:
        return cls(method, images, targets, **{"progress": method.progress, **options})

    def distances(self, maps: Tensor | None = None) -> Tensor:
        """``(N, nb_samples)`` distances ``d(φ(x), φ(x + δ))``, float64, NaN where a map is flat.

        ``maps`` are the method's maps of the clean images when already computed.
        """
        reference = self.method(self.images, self.targets) if maps is None else maps
        reference = check_maps(reference, self.images).flatten(1)
        generator = torch.Generator().manual_seed(self.seed)
        columns = []
        for _ in progress_bar(range(self.nb_samples), enabled=self.progress, desc="stability"):
            noise = torch.rand(self.images.shape, generator=generator).to(self.images.device)
            noisy = (self.images + (2 * noise - 1) * self.radius).clamp_(0.0, 1.0)
            moved = check_maps(self.method(noisy, self.targets), self.images).flatten(1)
            correlation = pearson_rows(reference, moved)
            columns.append((2 * (1 - correlation)).clamp_min(0).sqrt())
        return torch.stack(columns, dim=1).cpu()

    def scores(self, maps: Tensor | None = None) -> Tensor:
        """``(N,)`` float32: each image's mean distance (NaN if all its maps are flat)."""
        return self.distances(maps).nanmean(dim=1).to(torch.float32)

    def __call__(self, maps: Tensor | None = None) -> float:
        """The mean distance over images and noise samples, NaN distances left out."""
        return float(self.distances(maps).nanmean())

    def evaluate(self, maps: Tensor) -> float:
        return self(maps)

    def __repr__(self) -> str:
        return f"AverageStability(radius={self.radius}, nb_samples={self.nb_samples})"


# ----------------------------------------------------------------------- MeGe and ReCo


@dataclass(frozen=True)
class StabilityReport:
    """What :class:`AlgorithmicStability` measured; every pair is (unseen model, seen model) on one image.

    Attributes
    ----------
    mege, reco
        The two scores (NaN when their pairs are missing: no consistent pair for MeGe, no
        consistent or no inconsistent pair for ReCo).
    distances
        ``(P,)`` float64 :math:`\\sqrt{1 - |\\rho_s|}` per pair; NaN where a map is flat.
    consistent
        ``(P,)`` bool: both models predict the image's label.
    inconsistent
        ``(P,)`` bool: the two models predict different classes.
    images
        ``(P,)`` the index of each pair's image.
    dropped
        Consistent or inconsistent pairs left out because their distance is NaN.
    ignored
        Pairs in neither group (both models wrong, and wrong alike).
    accuracy
        ``(k,)`` each fold model's accuracy on its held-out fold.
    """

    mege: float
    reco: float
    distances: Tensor
    consistent: Tensor
    inconsistent: Tensor
    images: Tensor
    dropped: int
    ignored: int
    accuracy: Tensor


class AlgorithmicStability:
    r"""MeGe and ReCo: the stability of explanations under retraining, on held-out images.

    Fel, Vigouroux, Cadène & Serre, "How Good is your Explanation? Algorithmic Stability
    Measures to Assess the Quality of Explanations for Deep Neural Networks", WACV 2022.
    The images are split into ``k`` folds (from ``seed``); ``train_fn`` trains model
    :math:`f_i` on every fold but fold ``i``. Each image ``x`` of fold ``i`` is explained
    (for its label) by :math:`f_i`, which never saw it, and by every :math:`f_j`,
    ``j ≠ i``, which did; each of these ``k − 1`` pairs gets the distance

    .. math:: d = \sqrt{1 - |\rho_s(\phi^{f_i}(x), \phi^{f_j}(x))|}

    with :math:`\rho_s` Spearman's rank correlation over the pixels. Pairs where both
    models predict the label form :math:`D^{=}`, pairs where they predict different
    classes :math:`D^{\neq}`; then

    .. math:: \mathrm{MeGe} = \frac{1}{1 + \operatorname{mean}(D^{=})}, \qquad
              \mathrm{ReCo} = \max_\gamma\; \mathrm{TPR}_\gamma + \mathrm{TNR}_\gamma - 1

    where :math:`\mathrm{TPR}_\gamma` is the share of :math:`D^{\neq}` at least
    :math:`\gamma` and :math:`\mathrm{TNR}_\gamma` the share of :math:`D^{=}` below it (the
    best Youden index: how well the distance tells disagreeing models from agreeing ones).
    MeGe is 1 when all models give the same explanations; both are in [0, 1], higher is
    better. Pairs with a flat map (rank correlation undefined) are dropped and counted in
    :attr:`StabilityReport.dropped`.

    Cost: ``k`` calls of ``train_fn``, ``k · N`` forward passes and ``k · N`` explanations.

    Parameters
    ----------
    method
        A registered method name (built with ``method_options`` for each model) or a
        function ``model -> explainer``.
    images, labels
        ``(N, 3, H, W)`` in [0, 1] and their true classes ``(N,)``.
    train_fn
        ``(train_images, train_labels) -> model``, e.g. :class:`HeadFineTuning`.
    k
        Folds, in ``[2, N]``.
    method_options
        Options of a method given by name.
    seed
        Seeds the folds.
    batch_size, progress
        Images per forward pass when predicting and for a method given by name; progress
        bars.

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> model = models.load()
    >>> images, labels = torch.rand(8, 3, 224, 224), torch.tensor([1, 2] * 4)
    >>> stability = metrics.AlgorithmicStability(
    ...     "saliency", images, labels, train_fn=metrics.HeadFineTuning(model), k=4)
    >>> report = stability.evaluate()                            # doctest: +SKIP
    >>> report.mege, report.reco, report.dropped                 # doctest: +SKIP
    """

    def __init__(
        self,
        method: MethodSpec,
        images: Tensor,
        labels: Tensor,
        *,
        train_fn: TrainFn,
        k: int = 4,
        method_options: Mapping[str, Any] | None = None,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        if isinstance(method, str):
            attributions.method_class(method)  # an unknown name fails here, with suggestions
        elif not callable(method):
            raise TypeError(
                f"method must be a registered method name or a function model -> explainer; "
                f"got {type(method).__name__}"
            )
        if method_options and not isinstance(method, str):
            raise ValueError("method_options only applies to a method given by name")
        self.method = method
        self.method_options = dict(method_options or {})
        self.images = check_images(images)
        n = self.images.shape[0]
        if not isinstance(labels, Tensor) and not isinstance(labels, (list, tuple)):
            raise TypeError(f"labels must be {n} integer class indices; got {type(labels).__name__}")
        self.labels = check_targets(labels, n)
        if not callable(train_fn):
            raise TypeError(
                f"train_fn must be callable (train_images, train_labels) -> model; "
                f"got {type(train_fn).__name__}"
            )
        self.train_fn = train_fn
        self.k = check_int(k, "k", 2)
        if self.k > n:
            raise ValueError(
                f"k must be at most the number of images ({n}), so that every fold holds an image out; "
                f"got k={k}"
            )
        self.seed = check_seed(seed)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress
        self._report: StabilityReport | None = None

    def _explainer(self, model: nn.Module) -> Explainer:
        if isinstance(self.method, str):
            return attributions.create(
                self.method, model, batch_size=self.batch_size, progress=False, **self.method_options
            )
        return _check_explainer(self.method(model))

    def _train(self, train: Tensor) -> nn.Module:
        model = self.train_fn(self.images[train], self.labels[train].to(self.images.device))
        if not isinstance(model, nn.Module):
            hint = " (does it end with `return model`?)" if model is None else ""
            raise TypeError(
                f"train_fn must return the trained model, a torch.nn.Module; got {type(model).__name__}{hint}"
            )
        return model

    def folds(self) -> list[Tensor]:
        """The ``k`` folds: index tensors of (nearly) equal size, a random partition from ``seed``."""
        order = torch.randperm(self.images.shape[0], generator=torch.Generator().manual_seed(self.seed))
        return list(order.tensor_split(self.k))

    def evaluate(self) -> StabilityReport:
        """Train the fold models, explain, and compare (done once; later calls return the same report)."""
        if self._report is not None:
            return self._report
        folds = self.folds()
        models = []
        for i in progress_bar(range(self.k), enabled=self.progress, desc="train folds"):
            models.append(self._train(torch.cat([fold for j, fold in enumerate(folds) if j != i])))
        size = self.batch_size
        logits = [batched_forward(m, self.images, batch_size=size, progress=False) for m in models]
        predictions = torch.stack([output.argmax(dim=1) for output in logits]).cpu()
        labels = self.labels.cpu()
        explainers = [self._explainer(m) for m in models]
        distances, consistent, inconsistent, pair_images = [], [], [], []
        accuracy = torch.empty(self.k, dtype=torch.float64)
        for i, fold in enumerate(progress_bar(folds, enabled=self.progress, desc="explain folds")):
            accuracy[i] = (predictions[i, fold] == labels[fold]).double().mean()
            x, y = self.images[fold], self.labels[fold].to(self.images.device)
            maps = [check_maps(explain(x, y), x).flatten(1) for explain in explainers]
            for j in range(self.k):
                if j == i:
                    continue
                rho = spearman_rows(maps[i], maps[j]).cpu()
                distances.append((1 - rho.abs()).clamp_min(0).sqrt())
                right_i, right_j = predictions[i, fold] == labels[fold], predictions[j, fold] == labels[fold]
                consistent.append(right_i & right_j)
                inconsistent.append(predictions[i, fold] != predictions[j, fold])
                pair_images.append(fold)
        d, same, different = torch.cat(distances), torch.cat(consistent), torch.cat(inconsistent)
        valid = ~d.isnan()
        same_valid, different_valid = d[same & valid], d[different & valid]
        mege = 1.0 / (1.0 + float(same_valid.mean())) if same_valid.numel() else float("nan")
        self._report = StabilityReport(
            mege=mege,
            reco=youden_index(same_valid, different_valid),
            distances=d,
            consistent=same,
            inconsistent=different,
            images=torch.cat(pair_images),
            dropped=int(((same | different) & ~valid).sum()),
            ignored=int((~same & ~different).sum()),
            accuracy=accuracy,
        )
        return self._report


class MeGe(AlgorithmicStability):
    r"""MeGe: :math:`1 / (1 + \text{mean distance})` over pairs of models that agree and are right.

    Fel, Vigouroux, Cadène & Serre, WACV 2022; see :class:`AlgorithmicStability` for the
    protocol and the parameters. 1 when retraining never changes the explanation of a
    correctly classified image, towards 0 as it does; higher is better. Calling it returns
    the score; :meth:`evaluate` gives the whole :class:`StabilityReport`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> images, labels = torch.rand(8, 3, 224, 224), torch.tensor([1, 2] * 4)
    >>> mege = metrics.MeGe("saliency", images, labels, train_fn=metrics.HeadFineTuning(models.load()))
    >>> 0.0 <= mege() <= 1.0                                     # doctest: +SKIP
    True
    """

    higher_is_better = True

    def __call__(self) -> float:
        return self.evaluate().mege


class ReCo(AlgorithmicStability):
    r"""ReCo: the best Youden index of a distance threshold telling agreeing models from disagreeing ones.

    Fel, Vigouroux, Cadène & Serre, WACV 2022; see :class:`AlgorithmicStability`.
    :math:`\max_\gamma \mathrm{TPR}_\gamma + \mathrm{TNR}_\gamma - 1` over thresholds
    :math:`\gamma` on the distance, positives being the pairs of models that predict
    different classes, negatives the pairs that both predict the label. In [0, 1], higher is
    better: explanations that change exactly when the decision changes.

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> images, labels = torch.rand(8, 3, 224, 224), torch.tensor([1, 2] * 4)
    >>> reco = metrics.ReCo("saliency", images, labels, train_fn=metrics.HeadFineTuning(models.load()))
    >>> reco()                                                   # doctest: +SKIP
    """

    higher_is_better = True

    def __call__(self) -> float:
        return self.evaluate().reco


# ----------------------------------------------------------------- the default train_fn


def _classifier_head(model: nn.Module) -> nn.Linear:
    heads = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not heads:
        raise ValueError("HeadFineTuning needs a model whose output layer is a torch.nn.Linear; found none")
    return heads[-1]


class HeadFineTuning:
    r"""A default ``train_fn`` for :class:`MeGe` and :class:`ReCo`: a fresh head on a frozen backbone.

    Retraining a whole ImageNet network per fold is out of reach on a CPU; what MeGe and
    ReCo need is ``k`` models that differ by the data they saw. Here each fold model is a
    copy of ``backbone`` whose last :class:`torch.nn.Linear` (its classifier) is replaced
    by one trained from a seeded random start on the fold's images: multinomial logistic
    regression :math:`\min_{W,b} \mathrm{CE}(W z + b, y) + \lambda \lVert W\rVert^2` on the
    backbone's features :math:`z` (the head's inputs, computed once per call), by
    full-batch Adam. On EfficientNet-Lite0 and a few hundred images a fold takes seconds.

    Parameters
    ----------
    backbone
        The model; it is not modified (each call returns a new copy).
    epochs
        Full-batch Adam steps.
    learning_rate, weight_decay
        Adam's step size and the L2 penalty :math:`\lambda` on the weights.
    seed
        Seeds the head's initialisation (the same for every fold: folds differ by their data).
    batch_size, progress
        Images per forward pass when computing the features; progress bars.

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> train_fn = metrics.HeadFineTuning(models.load(), epochs=10)
    >>> model = train_fn(torch.rand(4, 3, 224, 224), torch.tensor([0, 1, 0, 1]))
    >>> model(torch.rand(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        epochs: int = 100,
        learning_rate: float = 1e-2,
        weight_decay: float = 1e-4,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = False,
    ) -> None:
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be a torch.nn.Module; got {type(backbone).__name__}")
        _classifier_head(backbone)
        self.backbone = backbone
        self.epochs = check_int(epochs, "epochs", 1)
        for name, value in (("learning_rate", learning_rate), ("weight_decay", weight_decay)):
            check_positive_float(value, name, allow_zero=True)
        self.learning_rate, self.weight_decay = float(learning_rate), float(weight_decay)
        self.seed = check_seed(seed)
        self.batch_size = check_batch_size(batch_size)
        self.progress = progress

    def features(self, images: Tensor) -> Tensor:
        """The inputs of the backbone's classifier head for ``images``, ``(N, D)``."""
        head = _classifier_head(self.backbone)
        captured: list[Tensor] = []
        checked = False

        def inputs_of_head(net: nn.Module, batch: Tensor, rows: slice) -> Tensor:
            nonlocal checked
            with hooked(
                net, {head: lambda _m, args: captured.append(args[0].flatten(1))}, kind="forward_pre"
            ):
                output = net(batch)
            if len(captured) != 1:
                raise ValueError(
                    f"the classifier head ({head}) ran {len(captured)} times in one forward pass; "
                    "HeadFineTuning needs a model that ends with it"
                )
            feature = captured.pop()
            if not checked:
                if output.shape != (batch.shape[0], head.out_features) or not torch.allclose(
                    output, head(feature), rtol=1e-4, atol=1e-4
                ):
                    raise ValueError(
                        f"the model's output is not the output of its last nn.Linear ({head}); "
                        "HeadFineTuning needs a model that ends with its classifier"
                    )
                checked = True
            return feature

        return batched_forward(
            self.backbone, images, batch_size=self.batch_size, progress=self.progress, fn=inputs_of_head
        )

    def __call__(self, images: Tensor, labels: Tensor) -> nn.Module:
        """A copy of the backbone with a head trained on ``images`` and ``labels``."""
        images = check_images(images)
        head = _classifier_head(self.backbone)
        labels = check_targets(labels, images.shape[0], head.out_features)
        features = self.features(images).detach()
        labels = labels.to(features.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            fresh = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
        fresh = fresh.to(features.device, features.dtype)
        optimizer = torch.optim.Adam(fresh.parameters(), lr=self.learning_rate)
        with torch.enable_grad():
            for _ in range(self.epochs):
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(fresh(features), labels)
                loss = loss + self.weight_decay * fresh.weight.square().sum()
                loss.backward()
                optimizer.step()
        model = copy.deepcopy(self.backbone)
        target = _classifier_head(model)
        with torch.no_grad():
            target.weight.copy_(fresh.weight)
            if target.bias is not None and fresh.bias is not None:
                target.bias.copy_(fresh.bias)
        return model.eval()

    def __repr__(self) -> str:
        return f"HeadFineTuning(epochs={self.epochs}, learning_rate={self.learning_rate})"
