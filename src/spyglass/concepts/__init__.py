"""Concepts: dictionaries learned from a layer's activations, and their metrics.

A dictionary learner factorises activations ``A`` ``(n_samples, n_features)`` — one row per
image crop, or per spatial position of a convolutional layer — as ``A ≈ U W``: a bank of
concepts ``W`` ``(n_concepts, n_features)`` (``components_``) and the coefficients ``U`` of
every row. CRAFT (Fel et al., CVPR 2023) uses NMF; "A Holistic Approach to Unifying
Automatic Concept Extraction and Concept Importance Estimation" (Fel et al., NeurIPS 2023)
compares the family below on reconstruction, sparsity and stability.

==================  ==============================  ==============================
learner             codes ``U``                      concepts ``W``
==================  ==============================  ==============================
:class:`NMF`        ``>= 0``, NNLS                   ``>= 0`` (needs ``A >= 0``)
:class:`SemiNMF`    ``>= 0``, NNLS                   signed
:class:`PCA`        ``(A − μ) Wᵀ``                   orthonormal
:class:`ICA`        ``(A − μ) Mᵀ``, independent      FastICA's mixing directions
:class:`KMeans`     one-hot nearest centroid         centroids
:class:`SparseCoding`  lasso, ``λ ‖u‖₁``             unit-norm atoms
==================  ==============================  ==============================

Every learner has ``fit(A)``, ``transform(A)``, ``fit_transform(A)``,
``inverse_transform(U)`` and ``differentiable_transform(A)``, works on torch tensors on
the device they come on, and is in the registry (``list_learners()``,
``create_learner(name, n_concepts, …)``).

:class:`Craft` puts them to work on a model: concepts of a class learned from crops of its
images at a layer, their importance for the class (Sobol' indices or Gradient×Input in
concept space), where they are in an image, and their sub-concepts at an earlier layer.
:func:`concept_deletion`, :func:`concept_insertion` and :func:`concept_mufidelity` measure
the fidelity of a concept importance (the holistic paper's C-Deletion, C-Insertion and
C-μFidelity); :func:`strategic_cluster_graph` maps the per-image importance of a class in
2-D (UMAP) to show the strategies the model uses and which concepts drive them.
:func:`class_concepts` runs the whole per-class chain (fit, importance, share of the logit,
best crops, concept maps, MACO renderings, concept ↔ class alignment) and returns it as data
(:class:`ClassConcepts`), for the demo page and the atlas.

Fitting uses scikit-learn where it is the well-kept reference (NMF, PCA, FastICA,
k-means); coding is our own torch code, because it runs at every spatial position of every
image, on the model's device, and must be differentiable with respect to the activations
— for NMF through the implicit gradient of the non-negative least-squares solution, which
no library offers.
"""

from spyglass.concepts._base import DictionaryLearner, NotFittedError, check_activations
from spyglass.concepts._registry import create_learner, learner_class, list_learners, register
from spyglass.concepts.craft import Craft
from spyglass.concepts.fidelity import concept_deletion, concept_insertion, concept_mufidelity
from spyglass.concepts.kmeans import KMeans
from spyglass.concepts.linear import ICA, PCA
from spyglass.concepts.metrics import (
    ConceptMatch,
    dictionary_stability,
    hoyer_sparsity,
    match_concepts,
    relative_reconstruction_error,
    sparsity,
)
from spyglass.concepts.nmf import NMF, SemiNMF
from spyglass.concepts.pipeline import (
    ClassConcepts,
    ConceptAlignment,
    ConceptEvidence,
    ConceptSettings,
    class_concepts,
)
from spyglass.concepts.sparse_coding import SparseCoding
from spyglass.concepts.strategic import StrategicClusterGraph, strategic_cluster_graph

__all__ = [
    "ICA",
    "NMF",
    "PCA",
    "ClassConcepts",
    "ConceptAlignment",
    "ConceptEvidence",
    "ConceptMatch",
    "ConceptSettings",
    "Craft",
    "DictionaryLearner",
    "KMeans",
    "NotFittedError",
    "SemiNMF",
    "SparseCoding",
    "StrategicClusterGraph",
    "check_activations",
    "class_concepts",
    "concept_deletion",
    "concept_insertion",
    "concept_mufidelity",
    "create_learner",
    "dictionary_stability",
    "hoyer_sparsity",
    "learner_class",
    "list_learners",
    "match_concepts",
    "register",
    "relative_reconstruction_error",
    "sparsity",
    "strategic_cluster_graph",
]
