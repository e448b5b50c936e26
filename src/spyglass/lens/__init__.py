"""Lens, the atlas: every class of a model, its concepts and where they appear, browsed in a web page.

From T. Fel's thesis "Sparks of Explainability" (Lens) and CRAFT (Fel et al., CVPR 2023):
:func:`build_atlas` runs the per-class concept pipeline on every class of a model over an
image folder (in process, or on Dask distributed) into an :class:`Atlas`, an SQLite store
beside image files that a killed build resumes. The viewer reads its documents:
:func:`export_site` writes the static site (it works from ``file://``) and :func:`serve`
serves it read-only, over any :class:`DocumentSource`.

Examples
--------
>>> from spyglass.lens import Atlas, build_atlas, export_site
>>> build_atlas("efficientnet_lite0", "photos/", "atlas/", fast=True)  # doctest: +SKIP
>>> Atlas.open("atlas/").index_document()["classes"][0]["status"]      # doctest: +SKIP
'done'
>>> export_site(Atlas.open("atlas/"), "site/")                          # doctest: +SKIP
PosixPath('site/index.html')
"""

from spyglass.lens.build import (
    FAST,
    AtlasSettings,
    BuildSummary,
    build_atlas,
    load_worker_model,
    weights_sha256,
)
from spyglass.lens.server import SiteServer, serve
from spyglass.lens.site import DocumentSource, export_site
from spyglass.lens.store import Atlas, AtlasMismatchError, ClassRecord, ModelInfo

__all__ = [
    "FAST",
    "Atlas",
    "AtlasMismatchError",
    "AtlasSettings",
    "BuildSummary",
    "ClassRecord",
    "DocumentSource",
    "ModelInfo",
    "SiteServer",
    "build_atlas",
    "export_site",
    "load_worker_model",
    "serve",
    "weights_sha256",
]
