"""Data: image files and folders, bundled sample photos, ImageNet class metadata."""

from spyglass.data.imagenet import imagenet_class_names, imagenet_descriptions, imagenet_wnids, wnid_to_index
from spyglass.data.images import (
    IMAGE_SUFFIXES,
    ImageSet,
    UnreadableImagesWarning,
    find_images,
    read_images,
)
from spyglass.data.samples import SAMPLE_EXPECTED_CLASSES, sample_photos

__all__ = [
    "IMAGE_SUFFIXES",
    "SAMPLE_EXPECTED_CLASSES",
    "ImageSet",
    "UnreadableImagesWarning",
    "find_images",
    "imagenet_class_names",
    "imagenet_descriptions",
    "imagenet_wnids",
    "read_images",
    "sample_photos",
    "wnid_to_index",
]
