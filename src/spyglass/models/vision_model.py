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
from spyglass.validation import check_floats, check_images, check_int, check_names, check_size

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
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"network must be a torch.nn.Module mapping normalised images (N, 3, H, W) to logits "
                f"(N, C); got {type(network).__name__}"
            )
        if any(parameter.is_meta for parameter in network.parameters()):
            raise ValueError(
                "network has parameters on the meta device (shapes without values): load its weights "
                "first, e.g. network.to_empty(device='cpu') then load_state_dict"
            )
        self.input_size = check_size(input_size, "input_size")
        mean = check_floats(mean, "mean", 3)
        std = check_floats(std, "std", 3, minimum=0.0, low_open=True)
        self.class_names = check_names(class_names, "class_names")
        if resize_size is not None:
            resize_size = check_int(resize_size, "resize_size", 1)
        if interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic'; got {interpolation!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str; got {type(name).__name__}")
        self.network = network
        self.resize_size = resize_size or round(max(self.input_size) / 0.875)
        self.interpolation = interpolation
        self.name = name
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self._check_outputs()

    def _check_outputs(self) -> None:
        """One forward pass of a blank image: the network must give one logit per class name.

        Run in eval mode under ``no_grad`` and the modes put back, so that the check leaves
        batch-norm statistics and the caller's train/eval choice as they were.
        """
        modes = [(module, module.training) for module in self.network.modules()]
        try:
            parameter = next(iter(self.network.parameters()), None)
            device = parameter.device if parameter is not None else torch.device("cpu")
            dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
            blank = torch.full((1, 3, *self.input_size), 0.5, device=device, dtype=dtype or torch.float32)
            self.network.eval()
            with torch.no_grad():
                logits = self.network((blank - self.mean.to(blank)) / self.std.to(blank))
        except Exception as error:
            raise ValueError(
                f"network must map normalised images (N, 3, {self.input_size[0]}, {self.input_size[1]}) "
                f"(input_size) to logits (N, C); a blank image of that size failed with "
                f"{type(error).__name__}: {error}"
            ) from error
        finally:
            for module, training in modes:
                module.training = training
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f"network must return logits of shape (N, C); got {shape} for one image")
        if logits.shape[1] != len(self.class_names):
            raise ValueError(
                f"class_names must name each of the network's {logits.shape[1]} classes; "
                f"got {len(self.class_names)} name(s)"
            )

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
            try:
                with Image.open(image) as opened:
                    image = opened.convert("RGB")
            except (OSError, Image.DecompressionBombError) as error:  # missing, unreadable, a bomb
                raise ValueError(f"cannot read the image {image}: {type(error).__name__}: {error}") from None
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
        images = check_images(images, model=self)
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
