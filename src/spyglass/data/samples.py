"""Real photographs that ship inside packages spyglass already depends on.

scikit-image bundles a few test photographs and scikit-learn two more; together they
give the demo and the docs real images with no download and nothing copied into the
project. Each comes with the ImageNet classes a good classifier should see in it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from spyglass.validation import check_names

__all__ = ["SAMPLE_EXPECTED_CLASSES", "sample_photos"]

# ImageNet indices a correct classifier should put first, for the photos where the
# answer is unambiguous (the others show scenes ImageNet has no single class for).
SAMPLE_EXPECTED_CLASSES: dict[str, frozenset[int]] = {
    "chelsea": frozenset({281, 282, 283, 284, 285}),  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": frozenset({967}),  # espresso
    "motorcycle": frozenset({670, 665}),  # motor scooter, moped
}


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        import skimage.data

        image: np.ndarray = getattr(skimage.data, name)()
        return image

    return read


def _motorcycle() -> np.ndarray:
    import skimage.data

    left, _right, _disparity = skimage.data.stereo_motorcycle()
    return np.asarray(left)


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(filename))

    return read


_READERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle": _motorcycle,
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


def sample_photos(names: list[str] | None = None) -> dict[str, Image.Image]:
    """The bundled photographs, by name, as RGB PIL images.

    Parameters
    ----------
    names
        A subset of ``astronaut, chelsea, coffee, rocket, motorcycle, china, flower``
        (default: all, in that order).

    Examples
    --------
    >>> from spyglass.data import sample_photos
    >>> sorted(sample_photos(["coffee"]))
    ['coffee']
    """
    chosen = list(_READERS) if names is None else check_names(names, "names")
    unknown = [n for n in chosen if n not in _READERS]
    if unknown:
        raise ValueError(f"unknown sample photo(s) {unknown}; available: {', '.join(_READERS)}")
    return {name: Image.fromarray(_READERS[name]()).convert("RGB") for name in chosen}
