"""Better models to explain: 1-Lipschitz classifiers and their optimal-transport counterfactuals.

- :func:`lipschitz_classifier`: a 1-Lipschitz CNN (deel-torchlip layers) as a ``VisionModel``;
- :func:`lipschitz_constant`: the constant bounded from below and above;
- :func:`train_lipschitz` with :func:`hkr_loss` (torchlip's soft multiclass hKR);
- :func:`export_lipschitz`: the same model with plain torch layers;
- :func:`ot_counterfactual`: :math:`x' = x - f(x)\\nabla f(x)`, on the decision boundary of an OTNN.
"""

from spyglass.alignment.counterfactual import OTCounterfactual, ot_counterfactual
from spyglass.alignment.lipschitz import (
    HEADS,
    LipschitzEstimate,
    alpha_from_lambda,
    export_lipschitz,
    hkr_loss,
    layer_bound,
    lipschitz_classifier,
    lipschitz_constant,
    train_lipschitz,
)

__all__ = [
    "HEADS",
    "LipschitzEstimate",
    "OTCounterfactual",
    "alpha_from_lambda",
    "export_lipschitz",
    "hkr_loss",
    "layer_bound",
    "lipschitz_classifier",
    "lipschitz_constant",
    "ot_counterfactual",
    "train_lipschitz",
]
