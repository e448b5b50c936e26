"""Better models to explain: harmonization with human maps, and 1-Lipschitz networks.

Harmonization (Fel, Felipe, Linsley, Serre, NeurIPS 2022):

- :func:`harmonization_loss`: trains a classifier's saliency towards human feature maps;
- :func:`harmonize`: the training loop with it, on a :class:`HumanMapFolder`;
- :func:`alignment_score`: how well explanations agree with human maps;
- :func:`composite_task` (with :func:`read_halves`): composites of real photos whose
  "human" map is known, to check that harmonization does what it claims.

1-Lipschitz networks (Serrurier, Mamalet, Fel et al., NeurIPS 2023):

- :func:`lipschitz_classifier`: a 1-Lipschitz CNN (deel-torchlip layers) as a ``VisionModel``;
- :func:`lipschitz_constant`: the constant bounded from below and above;
- :func:`train_lipschitz` with :func:`hkr_loss` (torchlip's soft multiclass hKR);
- :func:`export_lipschitz`: the same model with plain torch layers;
- :func:`ot_counterfactual`: :math:`x' = x - f(x)\\nabla f(x)`, on the decision boundary of an OTNN.
"""

from spyglass.alignment.composite import composite_task, read_halves
from spyglass.alignment.counterfactual import OTCounterfactual, ot_counterfactual
from spyglass.alignment.data import HumanMapFolder, clickme_map_transform, harmonize
from spyglass.alignment.harmonization import (
    HUMAN_SPEARMAN_CEILING,
    AlignmentResult,
    HarmonizationTerms,
    alignment_score,
    decayed_parameters,
    gaussian_pyramid,
    harmonization_loss,
    signed_saliency,
    standardize_cut,
)
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
    "HUMAN_SPEARMAN_CEILING",
    "AlignmentResult",
    "HarmonizationTerms",
    "HumanMapFolder",
    "LipschitzEstimate",
    "OTCounterfactual",
    "alignment_score",
    "alpha_from_lambda",
    "clickme_map_transform",
    "composite_task",
    "decayed_parameters",
    "export_lipschitz",
    "gaussian_pyramid",
    "harmonization_loss",
    "harmonize",
    "hkr_loss",
    "layer_bound",
    "lipschitz_classifier",
    "lipschitz_constant",
    "ot_counterfactual",
    "read_halves",
    "signed_saliency",
    "standardize_cut",
    "train_lipschitz",
]
