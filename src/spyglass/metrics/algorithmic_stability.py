"""Stability of explanations under retraining: MeGe and ReCo (Fel, Vigouroux, Cadène & Serre 2022).

How far the maps of one image move between models trained on different folds of the data,
i.e. whether the explanation is a property of the task or an accident of one training run.

Why our own: the reference implementation ties them to Keras (xplique) and its own training
loop. Here the retraining is any ``train_fn`` (by default :class:`~spyglass.training.HeadFineTuning`,
a fresh head on the frozen model, on :func:`spyglass.training.train`), explanations come
from any spyglass method built on each fold model, the fold models are trained once and
shared by every method and by both scores, and flat maps (whose rank correlation is
undefined) are counted and dropped explicitly instead of silently turning a mean into NaN.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spyglass.engines.forward import batched_forward
from spyglass.metrics._base import (
    MethodMetric,
    MethodSpec,
    build_explainer,
    check_images_targets,
    check_maps,
    check_method,
    register,
)
from spyglass.metrics._stats import spearman_rows, youden_index
from spyglass.progress import progress_bar
from spyglass.training import HeadFineTuning
from spyglass.validation import check_batch_size, check_int, check_model, check_seed

__all__ = ["AlgorithmicStability", "MeGe", "ReCo", "StabilityReport", "TrainFn"]

TrainFn = Callable[[Tensor, Tensor], nn.Module]
"""``train_fn(train_images (n, 3, H, W), train_labels (n,)) -> model``: one training run."""


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
    r"""The protocol behind MeGe and ReCo: fold models, and the distances of their explanations.

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

    The fold models are trained once (on the first :meth:`report`) and shared by every
    method; each method's report is kept.

    Cost: ``k`` calls of ``train_fn``, ``k · N`` forward passes, and ``k · N`` explanations
    per method.

    Parameters
    ----------
    model
        The model; with the default ``train_fn`` the fold models are copies of it with a
        retrained head.
    images, targets
        ``(N, 3, H, W)`` in [0, 1] and their true classes ``(N,)`` (the labels the fold
        models are trained on). Each fold model must be able to get held-out images right,
        so give several images of each class.
    train_fn
        ``(train_images, train_labels) -> model``; default :class:`~spyglass.training.HeadFineTuning`
        of ``model`` (100 full-batch Adam steps on the frozen features).
    k
        Folds, in ``[2, N]``.
    seed
        Seeds the folds.
    batch_size, progress
        Images per forward pass when predicting, and the batch size of a method given by
        name (and of the default ``train_fn``); progress bars.

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> model = models.load()
    >>> images, labels = torch.rand(8, 3, 224, 224), torch.tensor([1, 2] * 4)
    >>> stability = metrics.AlgorithmicStability(model, images, labels, k=4)
    >>> report = stability.report("saliency")                    # doctest: +SKIP
    >>> report.mege, report.reco, report.dropped                 # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Tensor,
        *,
        train_fn: TrainFn | None = None,
        k: int = 4,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        if not isinstance(targets, (Tensor, list, tuple)):
            raise TypeError(
                f"targets must be the true labels of the images, one each; got {type(targets).__name__}"
            )
        self.model = check_model(model)
        self.images, self.labels = check_images_targets(images, targets, self.model)
        self.batch_size, self.progress = check_batch_size(batch_size), progress
        n = self.images.shape[0]
        if train_fn is None:
            train_fn = HeadFineTuning(self.model, batch_size=self.batch_size)
        elif not callable(train_fn):
            raise TypeError(
                "train_fn must be callable (train_images, train_labels) -> model; "
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
        self._models: list[nn.Module] | None = None
        self._predictions: Tensor | None = None
        self._reports: dict[object, tuple[MethodSpec, StabilityReport]] = {}

    def same_protocol(self, other: AlgorithmicStability) -> bool:
        """Whether ``other`` trains the same fold models on the same images (so its reports are ours)."""
        return (
            self.images is other.images
            and torch.equal(self.labels, other.labels)
            and (self.k, self.seed, self.batch_size) == (other.k, other.seed, other.batch_size)
            and (self.train_fn is other.train_fn or self.train_fn == other.train_fn)
        )

    def folds(self) -> list[Tensor]:
        """The ``k`` folds: index tensors of (nearly) equal size, a random partition from ``seed``."""
        order = torch.randperm(self.images.shape[0], generator=torch.Generator().manual_seed(self.seed))
        return list(order.tensor_split(self.k))

    def _train(self, train: Tensor) -> nn.Module:
        model = self.train_fn(self.images[train], self.labels[train].to(self.images.device))
        if not isinstance(model, nn.Module):
            hint = " (does it end with `return model`?)" if model is None else ""
            raise TypeError(
                f"train_fn must return the trained model, a torch.nn.Module; got {type(model).__name__}{hint}"
            )
        return model

    def fold_models(self) -> list[nn.Module]:
        """The ``k`` fold models (model ``i`` never saw fold ``i``), trained on the first call."""
        if self._models is None:
            folds = self.folds()
            models = []
            for i in progress_bar(range(self.k), enabled=self.progress, desc="train folds"):
                models.append(self._train(torch.cat([fold for j, fold in enumerate(folds) if j != i])))
            size = self.batch_size
            logits = [batched_forward(m, self.images, batch_size=size, progress=False) for m in models]
            self._predictions = torch.stack([output.argmax(dim=1) for output in logits]).cpu()
            self._models = models
        return self._models

    def report(self, method: MethodSpec) -> StabilityReport:
        """Explain with every fold model and compare (once per method; later calls return the same report).

        ``method`` is a registered name or a factory ``model -> explainer``, built on each
        fold model.
        """
        method = check_method(method)
        key: object = method if isinstance(method, str) else id(method)
        if key in self._reports:
            return self._reports[key][1]
        models = self.fold_models()
        assert self._predictions is not None
        predictions, labels = self._predictions, self.labels.cpu()
        explainers = [build_explainer(method, m, batch_size=self.batch_size) for m in models]
        distances, consistent, inconsistent, pair_images = [], [], [], []
        accuracy = torch.empty(self.k, dtype=torch.float64)
        for i, fold in enumerate(progress_bar(self.folds(), enabled=self.progress, desc="explain folds")):
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
        report = StabilityReport(
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
        self._reports[key] = (method, report)  # the method is kept so that its id stays its own
        return report


class _StabilityScore(MethodMetric):
    """MeGe or ReCo: one number read off the :class:`StabilityReport` of a method."""

    higher_is_better = True

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        targets: Tensor,
        *,
        train_fn: TrainFn | None = None,
        k: int = 4,
        seed: int = 0,
        batch_size: int = 32,
        progress: bool = True,
    ) -> None:
        super().__init__(model, images, targets, batch_size=batch_size, progress=progress)
        self.stability = AlgorithmicStability(
            model,
            images,
            targets,
            train_fn=train_fn,
            k=k,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )

    def report(self, method: MethodSpec) -> StabilityReport:
        """The whole :class:`StabilityReport` of ``method``."""
        return self.stability.report(method)

    def reuse(self, other: MethodMetric) -> bool:
        if isinstance(other, _StabilityScore) and self.stability.same_protocol(other.stability):
            self.stability = other.stability
            return True
        return False

    @abstractmethod
    def _read(self, report: StabilityReport) -> float:
        """The score this metric reads off a report."""

    def __call__(self, method: MethodSpec, *, maps: Tensor | None = None) -> float:
        """The score of ``method`` (``maps`` are not used: the fold models explain afresh)."""
        return self._read(self.report(method))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.stability.k}, train_fn={self.stability.train_fn!r})"


@register("mege")
class MeGe(_StabilityScore):
    r"""MeGe: :math:`1 / (1 + \text{mean distance})` over pairs of models that agree and are right.

    Fel, Vigouroux, Cadène & Serre, WACV 2022; see :class:`AlgorithmicStability` for the
    protocol and the parameters. 1 when retraining never changes the explanation of a
    correctly classified image, towards 0 as it does (about 0.5 for maps unrelated to
    each other); higher is better. Calling it on a method returns the score;
    :meth:`report` gives the whole :class:`StabilityReport`.

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> images, labels = torch.rand(8, 3, 224, 224), torch.tensor([1, 2] * 4)
    >>> mege = metrics.MeGe(models.load(), images, labels, k=2)
    >>> 0.0 <= mege("saliency") <= 1.0                           # doctest: +SKIP
    True
    """

    def _read(self, report: StabilityReport) -> float:
        return report.mege


@register("reco")
class ReCo(_StabilityScore):
    r"""ReCo: the best Youden index of a distance threshold telling agreeing models from disagreeing ones.

    Fel, Vigouroux, Cadène & Serre, WACV 2022; see :class:`AlgorithmicStability`.
    :math:`\max_\gamma \mathrm{TPR}_\gamma + \mathrm{TNR}_\gamma - 1` over thresholds
    :math:`\gamma` on the distance, positives being the pairs of models that predict
    different classes, negatives the pairs that both predict the label. In [0, 1], higher is
    better: explanations that change exactly when the decision changes (0 for a method
    whose maps do not depend on the model at all).

    Examples
    --------
    >>> import torch
    >>> from spyglass import metrics, models
    >>> images, labels = torch.rand(8, 3, 224, 224), torch.tensor([1, 2] * 4)
    >>> reco = metrics.ReCo(models.load(), images, labels, k=2)
    >>> reco("saliency")                                         # doctest: +SKIP
    """

    def _read(self, report: StabilityReport) -> float:
        return report.reco
