"""Quasi-Monte Carlo designs and total-order Sobol' estimators, shared by pixels and concepts.

- :func:`sample`, :func:`pick_freeze_design`, :func:`sensitivity_design`: the design
  ``[A; B; C_1; …; C_d]`` of ``nb_design * (nb_dims + 2)`` points in ``[0, 1]^d``, its
  columns of ``B`` paired with ``A``'s so that they do not correlate (``pairing``), checked
  by :func:`pair_correlations` (:class:`DesignReport`, :class:`CorrelatedDesignWarning`).
- :func:`total_order_indices`: total-order indices from the scores of that design, with
  the estimators of Jansen, Saltelli, Homma & Saltelli, Janon et al. and Glen & Isaacs.
- :func:`sobol_total_indices`: both steps around any batched function.

Methods that run a model (Sobol' attribution, CRAFT's concept importance) draw the design,
stream it through the perturbation engine themselves, then call :func:`total_order_indices`.
"""

from spyglass.sampling.designs import (
    CORRELATION_THRESHOLD,
    PAIRINGS,
    SAMPLERS,
    CorrelatedDesignWarning,
    DesignReport,
    pair_correlations,
    pick_freeze_design,
    sample,
    sensitivity_design,
)
from spyglass.sampling.sobol import ESTIMATORS, sobol_total_indices, split_scores, total_order_indices

__all__ = [
    "CORRELATION_THRESHOLD",
    "ESTIMATORS",
    "PAIRINGS",
    "SAMPLERS",
    "CorrelatedDesignWarning",
    "DesignReport",
    "pair_correlations",
    "pick_freeze_design",
    "sample",
    "sensitivity_design",
    "sobol_total_indices",
    "split_scores",
    "total_order_indices",
]
