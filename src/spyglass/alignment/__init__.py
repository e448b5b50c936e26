"""Better models to explain: harmonization with human feature maps (Fel et al., NeurIPS 2022).

:func:`harmonization_loss` trains a classifier's saliency towards human maps;
:func:`alignment_score` measures how well explanations agree with them.
"""

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

__all__ = [
    "HUMAN_SPEARMAN_CEILING",
    "AlignmentResult",
    "HarmonizationTerms",
    "HumanMapFolder",
    "alignment_score",
    "clickme_map_transform",
    "decayed_parameters",
    "gaussian_pyramid",
    "harmonization_loss",
    "harmonize",
    "signed_saliency",
    "standardize_cut",
]
