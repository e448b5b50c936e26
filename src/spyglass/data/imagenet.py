"""ImageNet-1k class metadata: readable names and WordNet ids, by class index.

Both come from libraries spyglass already depends on, read offline: the short,
de-duplicated English names from torchvision's weight metadata, and the WordNet ids
(``n01440764`` …) from timm's ImageNet info.
"""

from __future__ import annotations

from functools import cache

__all__ = ["imagenet_class_names", "imagenet_descriptions", "imagenet_wnids", "wnid_to_index"]


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, by index (``0 -> "tench"``)."""
    from torchvision.models import ResNet50_Weights

    names = tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])
    if len(names) != 1000:  # a torchvision release that changed its metadata
        raise RuntimeError(f"expected 1000 ImageNet class names from torchvision; got {len(names)}")
    return names


@cache
def imagenet_wnids() -> tuple[str, ...]:
    """The 1,000 WordNet ids of ImageNet-1k, by index (``0 -> "n01440764"``)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    return tuple(info.index_to_label_name(i) for i in range(info.num_classes()))


@cache
def imagenet_descriptions() -> tuple[str, ...]:
    """The 1,000 WordNet lemmas of ImageNet-1k, by index (``0 -> "tench, Tinca tinca"``).

    Longer than :func:`imagenet_class_names` and not unique (two classes are ``"crane"``): a
    class is named by its index, and this is its description.
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


@cache
def wnid_to_index() -> dict[str, int]:
    """Map a WordNet id to its ImageNet-1k class index."""
    return {wnid: i for i, wnid in enumerate(imagenet_wnids())}
