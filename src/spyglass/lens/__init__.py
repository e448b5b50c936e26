"""Lens, the atlas: every class of a model, its concepts and where they appear.

From T. Fel's thesis "Sparks of Explainability" (Lens) and CRAFT (Fel et al., CVPR 2023):
:func:`build_atlas` runs the per-class concept pipeline on every class of a model over an
image folder (in process, or on Dask distributed) into an :class:`Atlas`, an SQLite store
beside image files that a killed build resumes; the viewer reads its documents.

Examples
--------
>>> from spyglass.lens import Atlas, build_atlas
>>> build_atlas("efficientnet_lite0", "photos/", "atlas/", fast=True)  # doctest: +SKIP
>>> Atlas.open("atlas/").index_document()["classes"][0]["status"]      # doctest: +SKIP
'done'
"""

from spyglass.lens.build import (
    FAST,
    AtlasSettings,
    BuildSummary,
    build_atlas,
    load_worker_model,
    weights_sha256,
)
from spyglass.lens.store import Atlas, AtlasMismatchError, ClassRecord, ModelInfo

__all__ = [
    "FAST",
    "Atlas",
    "AtlasMismatchError",
    "AtlasSettings",
    "BuildSummary",
    "ClassRecord",
    "ModelInfo",
    "build_atlas",
    "load_worker_model",
    "weights_sha256",
]
