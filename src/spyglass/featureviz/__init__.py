"""Feature visualization: what a class, a channel, a neuron or a concept responds to.

Two recipes share one optimisation loop, one set of objectives and one set of random views:

- :func:`maco` (Fel, Boissin et al., "Unlocking Feature Visualization for Deeper Networks
  with MAgnitude Constrained Optimization", NeurIPS 2023): the image's Fourier amplitude
  is fixed to that of natural photos, only its phase is learned, and the accumulated input
  gradient gives a transparency map;
- :func:`fourier` (Olah et al., "Feature Visualization", Distill 2017): Lucid's baseline,
  a learned spectrum with a 1/f prior, decorrelated colours, jitter, scale and rotation.

Objectives (:func:`logit`, :func:`channel`, :func:`neuron`, :func:`direction`) compose with
``+`` and scalar ``*``. We write our own rather than depend on Lucid (TensorFlow 1) or
``horama`` (the MACO authors' package): theirs downloads its spectrum at run time and
draws its randomness from global state; ours ships a spectrum measured by
``scripts/make_spectrum.py`` (:func:`spectrum.provenance`), seeds every draw, keeps the
magnitude constraint exact and leaves the model as it found it.

>>> from spyglass import models
>>> from spyglass.featureviz import logit, maco
>>> result = maco(models.load(), logit(1), steps=2, image_size=128, nb_crops=2, progress=False)
>>> result.image.shape
torch.Size([3, 128, 128])
"""

from spyglass.featureviz import spectrum
from spyglass.featureviz.objectives import (
    Objective,
    channel,
    create_objective,
    direction,
    list_objectives,
    logit,
    neuron,
    register_objective,
)
from spyglass.featureviz.optimize import (
    DEFAULT_CROP_SCALE,
    Visualization,
    default_crop_size,
    fourier,
    maco,
    optimize,
)
from spyglass.featureviz.parametrizations import FourierImage, MacoImage
from spyglass.featureviz.transforms import random_crops

__all__ = [
    "DEFAULT_CROP_SCALE",
    "FourierImage",
    "MacoImage",
    "Objective",
    "Visualization",
    "channel",
    "create_objective",
    "default_crop_size",
    "direction",
    "fourier",
    "list_objectives",
    "logit",
    "maco",
    "neuron",
    "optimize",
    "random_crops",
    "register_objective",
    "spectrum",
]
