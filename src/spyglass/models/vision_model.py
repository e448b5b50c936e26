"""The ``VisionModel`` wrapper: one image convention for every network.

Every spyglass method perturbs and optimises images in pixel space, ``[0, 1]`` RGB.
The wrapper owns the normalisation of its network, knows its input size and class
names, and turns files into tensors the way the network was trained to see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tf

from spyglass.engines.forward import batched_forward
from spyglass.validation import check_images, check_int

__all__ = ["Predictions", "VisionModel"]


@dataclass(frozen=True)
class Predictions:
    """Top-k classes of a batch of images.

    Attributes
    ----------
    indices
        ``(N, k)`` class indices, most probable first.
    probabilities
        ``(N, k)`` softmax probabilities of those classes.
    names
        ``N`` lists of ``k`` class names.
    """

    indices: Tensor
    probabilities: Tensor
    names: list[list[str]]

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def rows(self, i: int) -> list[tuple[int, str, float]]:
        """The top-k of image ``i`` as ``(index, name, probability)`` tuples."""
        return [
            (int(k), name, float(p))
            for k, name, p in zip(self.indices[i], self.names[i], self.probabilities[i], strict=True)
        ]


class VisionModel(nn.Module):
    """An image classifier that takes ``[0, 1]`` RGB images and normalises them itself.

    Parameters
    ----------
    network
        The classifier, mapping normalised images ``(N, 3, H, W)`` to logits ``(N, C)``.
    input_size
        ``(H, W)`` the network was trained at.
    mean, std
        Per-channel normalisation applied inside :meth:`forward`.
    class_names
        One name per output class.
    resize_size
        Shorter side an image is resized to before the centre crop of ``input_size``
        (default: ``input_size / 0.875``, the usual ImageNet evaluation ratio).
    interpolation
        Resampling used by :meth:`preprocess`: ``"bilinear"`` or ``"bicubic"``.
    name
        A label for reports.

    Examples
    --------
    Wrap your own network so that every spyglass method can explain it:

    >>> import torch, torchvision
    >>> from spyglass.models import VisionModel
    >>> net = torchvision.models.resnet18(num_classes=10)
    >>> model = VisionModel(net, input_size=(224, 224), mean=(0.485, 0.456, 0.406),
    ...                     std=(0.229, 0.224, 0.225), class_names=[str(i) for i in range(10)])
    >>> model(torch.rand(2, 3, 224, 224)).shape
    torch.Size([2, 10])
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        network: nn.Module,
        *,
        input_size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        class_names: Sequence[str],
        resize_size: int | None = None,
        interpolation: str = "bilinear",
        name: str = "model",
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std must have 3 values (RGB); got {mean!r} and {std!r}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive; got {std!r}")
        if interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic'; got {interpolation!r}")
        self.network = network
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.resize_size = int(resize_size or round(max(self.input_size) / 0.875))
        self.interpolation = interpolation
        self.class_names = list(class_names)
        self.name = name
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters (CPU for a parameter-free network)."""
        for parameter in self.parameters():
            return parameter.device
        return self.mean.device

    def forward(self, images: Tensor) -> Tensor:
        """Logits of ``[0, 1]`` images.

        No range check here on purpose: methods such as SmoothGrad evaluate the model
        slightly outside ``[0, 1]``. Public entry points check their input once.
        """
        return self.network((images - self.mean) / self.std)

    def preprocess(self, image: Image.Image | str | Path) -> Tensor:
        """Resize the shorter side, centre-crop to ``input_size``, and return ``(3, H, W)`` in [0, 1]."""
        if isinstance(image, (str, Path)):
            with Image.open(image) as opened:
                image = opened.convert("RGB")
        elif isinstance(image, Image.Image):
            image = image.convert("RGB")
        else:
            raise TypeError(
                f"preprocess takes a PIL image or a path to an image file; got {type(image).__name__}"
            )
        mode = InterpolationMode.BICUBIC if self.interpolation == "bicubic" else InterpolationMode.BILINEAR
        image = tf.resize(image, self.resize_size, interpolation=mode)
        image = tf.center_crop(image, list(self.input_size))
        return tf.pil_to_tensor(image).float().div_(255.0)

    def predict(
        self,
        images: Tensor,
        top_k: int = 5,
        *,
        batch_size: int = 32,
        progress: bool = True,
    ) -> Predictions:
        """The ``top_k`` most probable classes of each image.

        Parameters
        ----------
        images
            ``(N, 3, H, W)`` in [0, 1]; see :meth:`preprocess`.
        top_k
            How many classes to return per image (all of them if the model has fewer).
        batch_size
            Images per forward pass; bounds the memory used.
        progress
            Show a progress bar (on a terminal).
        """
        check_images(images)
        check_int(top_k, "top_k", 1)
        top_k = min(top_k, self.num_classes)
        logits = batched_forward(self, images, batch_size=batch_size, progress=progress)
        probabilities, indices = logits.softmax(dim=1).topk(top_k, dim=1)
        names = [[self.class_names[int(k)] for k in row] for row in indices]
        return Predictions(indices=indices, probabilities=probabilities, names=names)

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, input_size={self.input_size}, "
            f"num_classes={self.num_classes}, mean={self.mean.flatten().tolist()}, "
            f"std={self.std.flatten().tolist()}"
        )
