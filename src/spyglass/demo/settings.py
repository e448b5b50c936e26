"""The demo's settings, in one place: which methods and metrics it shows, and how cheaply.

Every figure is sized for a 2-core CPU and the 7 bundled photos. A new attribution method
shows up in the demo once it is registered and named in :data:`DEMO_METHODS`; it runs at
the ``"demo"`` settings its class declares.
"""

from __future__ import annotations

__all__ = [
    "DEMO_BATCH_SIZE",
    "DEMO_CONCEPTS",
    "DEMO_CONCEPTS_SHOWN",
    "DEMO_CROPS_SHOWN",
    "DEMO_FEATUREVIZ",
    "DEMO_FEATUREVIZ_CLASSES",
    "DEMO_METHODS",
    "DEMO_METRICS",
    "DEMO_PATCH",
]

# The attribution methods of the demo, in column order. Each runs at the "demo" settings it
# declares (attributions.method_settings(name, "demo")), cheap enough for a 2-core CPU: per
# photo, 1 gradient (saliency, gradcam), 16 (integrated_gradients, smoothgrad), 408 forward
# passes (sobol), 400 (rise) and 259 (eva's hybrid mode: 37 sets of a 6 × 6 grid × 7 points,
# about 23 s for the 7 photos, under the 30 s an EVA column may cost); about 80 forward
# passes or 25 gradients a second there.
DEMO_METHODS: tuple[str, ...] = (
    "saliency",
    "integrated_gradients",
    "smoothgrad",
    "gradcam",
    "sobol",
    "rise",
    "eva",
)
# Images per batch: the per-image cost of the default model is lowest near 16 (DESIGN.md).
DEMO_BATCH_SIZE = 16
# The metrics of the demo's table, cheap: per method, 7 photos × (11 + 11 + 33) forward passes.
DEMO_METRICS: dict[str, dict[str, object]] = {
    "deletion": {"steps": 10},
    "insertion": {"steps": 10},
    "mufidelity": {"nb_samples": 32},
}
# CRAFT on each photo's own crops: 64 px at stride 32 give 36 crops of a 224 px photo.
DEMO_CONCEPTS, DEMO_PATCH = 5, 64
DEMO_CONCEPTS_SHOWN, DEMO_CROPS_SHOWN = 3, 4
# MACO images of the first photos' top-1 classes, cheap: 2 classes × 48 steps of 4 crops at
# 256 px (about 0.1 s a step on 2 idle cores). The library's defaults are 256 steps at 512 px.
DEMO_FEATUREVIZ: dict[str, int] = {"steps": 48, "image_size": 256, "nb_crops": 4}
DEMO_FEATUREVIZ_CLASSES = 2
