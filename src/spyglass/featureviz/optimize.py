"""The optimisation loop of feature visualization, and its two recipes: MACO and Fourier.

One loop serves both: build the image from its parametrisation, draw a batch of random
views (:func:`~spyglass.featureviz.transforms.random_crops`), maximise the mean objective
of the views with NAdam, and accumulate the absolute gradient of the loss with respect to
the image, which MACO (Fel, Boissin et al., NeurIPS 2023) turns into a transparency map
for free: the regions the model was most sensitive to over the optimisation.

The model is left as found: evaluated in eval mode (every sub-module's flag restored),
its parameters' ``requires_grad`` switched off during the loop (no parameter gradient is
computed: a large share of the cost on a CPU) and restored, no hook left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from spyglass.engines.forward import model_device
from spyglass.engines.state import eval_mode
from spyglass.featureviz.objectives import Objective
from spyglass.featureviz.parametrizations import FourierImage, MacoImage
from spyglass.featureviz.transforms import random_crops
from spyglass.models.vision_model import VisionModel
from spyglass.progress import progress_bar
from spyglass.validation import check_bool, check_callable, check_float, check_int, check_seed, check_size

__all__ = ["DEFAULT_CROP_SCALE", "Visualization", "default_crop_size", "fourier", "maco", "optimize"]

DEFAULT_CROP_SCALE = (1.0, 1.5)
"""Default side of the random crops in units of the model's input side, ``(low, high)``.

Crops at least as large as the input are shrunk, never enlarged, on their way to the
model, so the model sees the image at the scale of the natural photos whose spectrum
MACO imposes (at ``S = 1280`` and a 224 px input this is close to the authors' 25–30 %).
"""


@dataclass(frozen=True)
class Visualization:
    """The result of a feature visualization.

    Attributes
    ----------
    image
        ``(3, S, S)`` RGB in [0, 1].
    transparency
        ``(S, S)`` in [0, 1]: the accumulated absolute gradient of the objective with
        respect to the image, summed over colours and divided by its maximum.
    history
        ``(steps,)`` the mean objective over each step's crops.
    """

    image: Tensor
    transparency: Tensor
    history: Tensor


StepCallback = Callable[[int, nn.Module], None]


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def default_crop_size(image_size: int, input_size: tuple[int, int]) -> tuple[float, float]:
    """:data:`DEFAULT_CROP_SCALE` as fractions of an ``image_size`` image, capped at 1."""
    image_size = check_int(image_size, "image_size", 1)
    side = max(check_size(input_size, "input_size")) / image_size
    low, high = DEFAULT_CROP_SCALE
    return min(1.0, low * side), min(1.0, high * side)


def _check_crop_size(crop_size: object, image_size: int, input_size: tuple[int, int]) -> tuple[float, float]:
    if crop_size is None:
        return default_crop_size(image_size, input_size)
    if (
        isinstance(crop_size, tuple)
        and len(crop_size) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in crop_size)
        and 0 < crop_size[0] <= crop_size[1] <= 1
    ):
        return float(crop_size[0]), float(crop_size[1])
    raise ValueError(
        "crop_size must be None or (low, high) fractions of the image side with 0 < low <= high <= 1; "
        f"got {crop_size!r}"
    )


def _check_model_and_objective(model: object, objective: object) -> tuple[VisionModel, Objective]:
    if not isinstance(model, VisionModel):
        raise TypeError(
            "model must be a spyglass.models.VisionModel (spyglass.models.load(), or wrap your "
            f"network in VisionModel); got {type(model).__name__}"
        )
    if not isinstance(objective, Objective):
        raise TypeError(
            "objective must be a spyglass.featureviz objective such as logit(class_id) or "
            f"channel(layer, index); got {type(objective).__name__}"
        )
    objective.check(model)
    return model, objective


def optimize(
    model: VisionModel,
    objective: Objective,
    image: nn.Module,
    *,
    steps: int,
    nb_crops: int,
    crop_size: tuple[float, float] | None = None,
    lr: float = 1.0,
    noise: float = 0.05,
    rotation: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> Visualization:
    """Maximise ``objective`` over random views of a parametrised ``image``.

    At each step: ``v_1..v_K = views(image())``, ``loss = -mean_k objective(model, v_k)``,
    one NAdam step on the image's parameters, and ``T += Σ_colour |∂loss/∂image|``. This is
    the loop of MACO (Fel, Boissin et al., NeurIPS 2023) and of Lucid-style Fourier
    visualization (Olah et al., Distill 2017); :func:`maco` and :func:`fourier` call it
    with their parametrisations and defaults.

    Parameters
    ----------
    model
        A :class:`~spyglass.models.VisionModel`; views are resized to its ``input_size``.
    objective
        What to maximise (:func:`~spyglass.featureviz.logit` and friends).
    image
        A module whose ``forward()`` returns a ``(3, S, S)`` image in [0, 1] and whose
        parameters are optimised (:class:`MacoImage`, :class:`FourierImage` or your own).
    steps, nb_crops, crop_size, lr, noise, rotation
        Optimisation steps, views per step, their side as a fraction ``(low, high)`` of the
        image's, NAdam's learning rate, the std of the Gaussian noise added to the views, and
        the largest rotation in degrees. ``crop_size=None``: :func:`default_crop_size`.
    generator
        Draws every view (default: seeded 0).
    progress
        Show a progress bar (on a terminal).
    on_step
        Called as ``on_step(step, image)`` after each update (for monitoring and tests).

    Examples
    --------
    >>> from spyglass import models
    >>> from spyglass.featureviz import MacoImage, logit, optimize
    >>> model = models.load()
    >>> result = optimize(model, logit(1), MacoImage(128), steps=2, nb_crops=2, progress=False)
    >>> result.image.shape, result.transparency.shape
    (torch.Size([3, 128, 128]), torch.Size([128, 128]))
    """
    model, objective = _check_model_and_objective(model, objective)
    steps = check_int(steps, "steps", 1)
    nb_crops = check_int(nb_crops, "nb_crops", 1)
    lr = check_float(lr, "lr", minimum=0, low_open=True)
    noise = check_float(noise, "noise", minimum=0)
    rotation = check_float(rotation, "rotation", minimum=0)
    check_bool(progress, "progress")
    if on_step is not None:
        check_callable(on_step, "on_step", "(step, image) -> None")
    device = model_device(model)
    generator = generator if generator is not None else torch.Generator(device=device).manual_seed(0)
    image = image.to(device)
    parameters = [p for p in image.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("image has no parameter to optimise")
    optimizer = torch.optim.NAdam(parameters, lr=lr)
    history = torch.zeros(steps)
    with eval_mode(model), _frozen(model):
        with torch.no_grad():  # an unfit channel index or class fails here, before any work
            objective(model, torch.full((1, 3, *model.input_size), 0.5, device=device))
        rendered = image()
        if rendered.ndim != 3 or rendered.shape[0] != 3 or rendered.shape[1] != rendered.shape[2]:
            raise ValueError(f"image() must return a (3, S, S) tensor; got shape {tuple(rendered.shape)}")
        crops = _check_crop_size(crop_size, rendered.shape[-1], model.input_size)
        transparency = torch.zeros(rendered.shape[-2:], device=device)
        for step in progress_bar(range(steps), enabled=progress, desc="featureviz", unit="step"):
            rendered = image()
            views = random_crops(
                rendered,
                nb_crops,
                crop_size=crops,
                output_size=model.input_size,
                generator=generator,
                noise=noise,
                rotation=rotation,
            )
            score = objective(model, views).mean()
            if not torch.isfinite(score):
                raise ValueError(
                    f"objective {objective!r} gave a non-finite score ({float(score.detach())}) at "
                    f"step {step}: "
                    f"the model's output or the layer's activations overflow, or lr={lr:g} is too large"
                )
            gradients = torch.autograd.grad(-score, [rendered, *parameters])
            transparency += gradients[0].abs().sum(dim=0)
            for parameter, gradient in zip(parameters, gradients[1:], strict=True):
                parameter.grad = gradient
            optimizer.step()
            history[step] = float(score.detach())
            if on_step is not None:
                on_step(step, image)
        with torch.no_grad():
            final = image().clamp(0.0, 1.0)
    for parameter in parameters:
        parameter.grad = None
    peak = transparency.max()
    transparency = transparency / peak if peak > 0 else transparency
    return Visualization(image=final.detach().cpu(), transparency=transparency.cpu(), history=history)


def maco(
    model: VisionModel,
    objective: Objective,
    steps: int = 256,
    image_size: int = 512,
    crop_size: tuple[float, float] | None = None,
    nb_crops: int = 6,
    lr: float = 1.0,
    noise: float = 0.05,
    seed: int = 0,
    progress: bool = True,
) -> Visualization:
    """MACO: feature visualization with the amplitude of natural images, only the phase learned.

    Fel, Boissin, Boutin, Picard, Novello, Colin, Linsley, Rousseau, Cadène, Goetschalckx,
    Gardes, Serre, "Unlocking Feature Visualization for Deeper Networks with MAgnitude
    Constrained Optimization", NeurIPS 2023. The image is ``σ(C · irfft2(|M| e^{iφ}))``
    with ``|M|`` the amplitude spectrum of natural photos (shipped, see
    :func:`spyglass.featureviz.spectrum.provenance`); NAdam maximises the mean objective
    of ``nb_crops`` random crops per step over φ alone. The transparency map is the
    accumulated ``|∂loss/∂image|``.

    Parameters
    ----------
    model
        A :class:`~spyglass.models.VisionModel` (images in [0, 1]; it normalises itself).
    objective
        :func:`logit`, :func:`channel`, :func:`neuron`, :func:`direction` or a combination.
    steps
        Optimisation steps.
    image_size
        Side ``S`` of the square image; any size >= 16 (the FFT needs no power of two).
    crop_size
        ``(low, high)``: each crop's side is a uniform fraction of ``S`` in that range
        (default: :func:`default_crop_size`, crops 1 to 1.5 times the model's input side);
        crops are resized to the model's input.
    nb_crops
        Crops per step (the batch of the model).
    lr
        NAdam's learning rate.
    noise
        Standard deviation of the Gaussian noise added to each crop, in pixel units.
    seed
        Seeds the initial phase and every crop and noise draw.
    progress
        Show a progress bar (on a terminal).

    Examples
    --------
    >>> from spyglass import models
    >>> from spyglass.featureviz import logit, maco
    >>> model = models.load()
    >>> result = maco(model, logit(1), steps=2, image_size=128, nb_crops=2, progress=False)  # goldfish
    >>> result.image.shape, result.transparency.shape
    (torch.Size([3, 128, 128]), torch.Size([128, 128]))
    """
    seed = check_seed(seed)
    check_bool(progress, "progress")
    model, objective = _check_model_and_objective(model, objective)
    generator = torch.Generator(device=model_device(model)).manual_seed(seed)
    image = MacoImage(image_size, generator=generator)
    return optimize(
        model,
        objective,
        image,
        steps=steps,
        nb_crops=nb_crops,
        crop_size=crop_size,
        lr=lr,
        noise=noise,
        generator=generator,
        progress=progress,
    )


def fourier(
    model: VisionModel,
    objective: Objective,
    steps: int = 256,
    image_size: int = 512,
    crop_size: tuple[float, float] | None = None,
    nb_crops: int = 6,
    lr: float = 1.0,
    noise: float = 0.05,
    seed: int = 0,
    progress: bool = True,
    *,
    decay_power: float = 1.0,
    rotation: float = 5.0,
) -> Visualization:
    """The Fourier baseline: a learned spectrum with a 1/f prior, decorrelated colours, jitter.

    Olah, Mordvintsev and Schubert, "Feature Visualization", Distill 2017 (Lucid). The
    image is ``σ(C · standardise(irfft2(z / max(f, 1/S)^d)))``; every coefficient ``z`` is
    learned. Each step judges it through ``nb_crops`` random views: a crop of random size
    (scale) and position (jitter), a rotation of up to ``rotation`` degrees, and noise.
    Same loop and arguments as :func:`maco`, plus ``decay_power`` (``d``) and ``rotation``.

    Examples
    --------
    >>> from spyglass import models
    >>> from spyglass.featureviz import fourier, logit
    >>> result = fourier(models.load(), logit(1), steps=2, image_size=128, nb_crops=2, progress=False)
    >>> result.image.shape
    torch.Size([3, 128, 128])
    """
    seed = check_seed(seed)
    check_bool(progress, "progress")
    model, objective = _check_model_and_objective(model, objective)
    generator = torch.Generator(device=model_device(model)).manual_seed(seed)
    image = FourierImage(image_size, decay_power=decay_power, generator=generator)
    return optimize(
        model,
        objective,
        image,
        steps=steps,
        nb_crops=nb_crops,
        crop_size=crop_size,
        lr=lr,
        noise=noise,
        rotation=rotation,
        generator=generator,
        progress=progress,
    )
