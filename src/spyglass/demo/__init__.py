"""The main job on the embedded default: one report page for the bundled photos.

``make demo`` and ``spyglass demo`` run :func:`run_demo`. The page shows each bundled
photo as the model sees it (resized and centre-cropped) with its top-5 classes, then
where the model looks (attribution maps of its top-1 class), which of those maps to trust
(fidelity metrics), what the model sees (CRAFT concepts of each photo) and what it
imagines (MACO images of the predicted classes). One module per section:

==================  ====================================  ==============================
module              section                               computed by
==================  ====================================  ==============================
``predictions``     What the model predicts               ``VisionModel.predict``
``attributions``    Where the model looks                 :mod:`spyglass.attributions`
``metrics``         Which maps to trust                   :func:`spyglass.metrics.evaluate`
``concepts``        What the model sees                   :func:`spyglass.concepts.class_concepts`
``featureviz``      What the model imagines               :func:`spyglass.featureviz.maco`
==================  ====================================  ==============================

:mod:`spyglass.demo.settings` holds what the demo shows and its cheap settings
(:data:`DEMO_METHODS`, :data:`DEMO_METRICS`, ...); :mod:`spyglass.demo.page` is the page
builder with its style sheet.
"""

from spyglass.demo.page import Page

# _demo_methods: the CLI's tests check the default method list through it.
from spyglass.demo.run import _demo_methods as _demo_methods
from spyglass.demo.run import run_demo
from spyglass.demo.settings import DEMO_FEATUREVIZ, DEMO_METHODS, DEMO_METRICS

__all__ = ["DEMO_FEATUREVIZ", "DEMO_METHODS", "DEMO_METRICS", "Page", "run_demo"]
