"""Building an atlas: one independent job per class, in process or on Dask distributed.

Lens (T. Fel's thesis "Sparks of Explainability"; CRAFT, Fel et al., CVPR 2023) shows, for
every class of a model, the concepts it uses, how much each matters and how the class's
images group by strategy. :func:`build_atlas` makes that atlas for any model and image
folder:

1. the model predicts every image of the folder once (stored, so a rerun does not redo it);
   a class's images are those it is *predicted* as (Lens's rule), at most
   ``settings.max_images`` of them, in folder order;
2. each class is one job running the per-class pipeline
   :func:`spyglass.concepts.class_concepts` (CRAFT at :func:`~spyglass.models.default_layer`,
   Gradient×Input share of the logit, best crops, concept maps, MACO renderings, concept ↔
   class alignment and the strategic cluster graph), plus the within-class concept
   similarity and its 2-D layout; the job encodes its images (JPEG/PNG bytes) and ships back
   numbers and bytes only (a :class:`~spyglass.lens.store.ClassRecord`, never the fitted Craft);
3. the caller's process is the store's single writer: each class is written as it arrives
   (files, then its records in one transaction); a failing class is recorded with its error and
   the build goes on;
4. after all classes, each concept's most similar concepts in *other* classes are linked
   (cosine of the concept vectors, at least ``settings.similar_threshold``, top
   ``settings.similar_top_k``).

Why Dask distributed. The jobs are independent and minutes long, each needs the model in
memory and maybe a GPU: a pool of long-lived worker processes that each load the model once
(:func:`load_worker_model`, a per-process cache keyed by the model spec) is exactly what Dask
gives, on one machine (a ``LocalCluster``, ``workers=N``) or many (``scheduler=ADDRESS``), with
a worker lost mid-class rescheduled on another. Workers receive a model *spec* (a
:func:`spyglass.models.load` name or file, or an importable factory function), never a pickled
model, and read the photos from the data folder themselves (on a cluster, it must be at the
same path on every machine).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from spyglass.lens.store import Atlas, ClassRecord, ModelInfo
from spyglass.models import VisionModel
from spyglass.validation import check_bool, check_float, check_int, check_probability, check_seed

__all__ = [
    "FAST",
    "IMPORTANT_RULE",
    "LAYOUT_METHOD",
    "AtlasSettings",
    "BuildSummary",
    "ModelSpec",
    "build_atlas",
    "classical_mds",
    "load_worker_model",
    "model_info",
    "weights_sha256",
]

ModelSpec = str | Callable[[], VisionModel] | VisionModel
"""A model as a build takes it: a :func:`spyglass.models.load` name or model file, a top-level
function returning a :class:`VisionModel` (workers import it), or the model itself (in process only)."""

IMPORTANT_RULE = "top concept of >= {:.0%} of the images"
LAYOUT_METHOD = (
    "classical MDS of the chord distances sqrt(2 - 2 cos) between the concept vectors "
    "(equal to PCA of the unit concept vectors)"
)
_PREDICT_CHUNK = 256  # images per prediction job
_ATLAS_LOG = logging.getLogger("spyglass.lens")


@dataclass(frozen=True)
class AtlasSettings:
    """What an atlas is computed with; two builds into one atlas must use equal settings.

    Attributes
    ----------
    max_images
        Images per class at most (the first ones, in folder order, that the model predicts as
        the class). Default 50, the size of a class of the ImageNet validation set.
    min_images
        A class with fewer predicted images is not built (an explicitly requested one is recorded
        as failed): UMAP and CRAFT need a few. Default 4.
    n_concepts
        CRAFT's concepts per class. Default 10.
    patch_size
        Side of CRAFT's crops, in pixels of the model's input. Default 64.
    n_crops
        Best crops kept per concept. Default 10.
    n_maps
        Images per concept with its concept attribution map. Default 3.
    maco_steps, maco_size, maco_crops
        MACO rendering of each concept: optimisation steps, image side, crops per step
        (defaults 256, 256, 6); ``maco_steps=0`` renders nothing.
    alignment_top_k
        Most aligned classes kept per concept. Default 5.
    min_share
        The important-concept rule: top concept for at least this share of the images
        (default 0.1, Lens's and the holistic paper's 10 %).
    similar_top_k, similar_threshold
        Similar concepts in other classes: at most ``similar_top_k`` (default 5) with a cosine of
        at least ``similar_threshold`` (default 0.5).
    thumb_size
        Side of the thumbnails of every image (the cluster graph's hover). Default 64.
    jpeg_quality
        Quality of the JPEG files (photos, thumbnails, crops, map overlays). Default 85.
    seed
        Seeds CRAFT, MACO and UMAP: the same seed gives the same atlas.
    batch_size
        Images per forward pass (bounds memory). Default 32.
    """

    max_images: int = 50
    min_images: int = 4
    n_concepts: int = 10
    patch_size: int = 64
    n_crops: int = 10
    n_maps: int = 3
    maco_steps: int = 256
    maco_size: int = 256
    maco_crops: int = 6
    alignment_top_k: int = 5
    min_share: float = 0.1
    similar_top_k: int = 5
    similar_threshold: float = 0.5
    thumb_size: int = 64
    jpeg_quality: int = 85
    seed: int = 0
    batch_size: int = 32

    def __post_init__(self) -> None:
        check_int(self.min_images, "min_images", 4)
        check_int(self.max_images, "max_images", self.min_images)
        check_int(self.n_concepts, "n_concepts", 1)
        check_int(self.patch_size, "patch_size", 1)
        check_int(self.n_crops, "n_crops", 1)
        check_int(self.n_maps, "n_maps", 0)
        check_int(self.maco_steps, "maco_steps", 0)
        check_int(self.maco_size, "maco_size", 16)
        check_int(self.maco_crops, "maco_crops", 1)
        check_int(self.alignment_top_k, "alignment_top_k", 1)
        check_probability(self.min_share, "min_share")
        check_int(self.similar_top_k, "similar_top_k", 0)
        check_float(self.similar_threshold, "similar_threshold", minimum=-1.0, maximum=1.0)
        check_int(self.thumb_size, "thumb_size", 8)
        check_int(self.jpeg_quality, "jpeg_quality", 1, maximum=95)
        check_seed(self.seed)
        check_int(self.batch_size, "batch_size", 1)

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def rules(self) -> dict[str, Any]:
        """The rules the atlas records beside the settings (shown by the viewer)."""
        return {
            "important_rule": IMPORTANT_RULE.format(self.min_share),
            "similar_rule": (
                f"the {self.similar_top_k} concepts of other classes with the largest cosine between "
                f"concept vectors, at least {self.similar_threshold}"
            ),
            "layout": LAYOUT_METHOD,
            "images": f"the first {self.max_images} images of the folder the model predicts as the class",
            "importance": "Gradient×Input in concept space, as a share of the class logit",
        }


FAST = AtlasSettings(
    max_images=12, n_concepts=5, n_crops=5, n_maps=2, maco_steps=16, maco_size=64, maco_crops=2, batch_size=16
)
"""A preset for CPUs: 12 images and 5 concepts per class, 16 MACO steps on 64 px images."""


@dataclass(frozen=True)
class BuildSummary:
    """What :func:`build_atlas` did.

    Attributes
    ----------
    root
        The atlas folder.
    built, failed, skipped
        Class ids stored as done in this run, failed in this run, and already done before it.
    seconds
        Wall time of the run.
    """

    root: Path
    built: tuple[int, ...]
    failed: tuple[int, ...]
    skipped: tuple[int, ...]
    seconds: float


@dataclass(frozen=True)
class _ClassFailure:
    class_id: int
    error: str
    seconds: float


# ----------------------------------------------------------------------------- models


def _spec_key(spec: ModelSpec) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, VisionModel):
        return spec.name or type(spec.network).__name__
    if callable(spec):
        module = getattr(spec, "__module__", None)
        name = getattr(spec, "__qualname__", None)
        if not module or not name or "<" in name:
            raise TypeError(
                f"a model factory must be a top-level function (workers import it by name); got {spec!r}"
            )
        return f"{module}:{name}"
    raise TypeError(
        "model must be a spyglass.models.load name or file, a function returning a VisionModel, or a "
        f"VisionModel; got {type(spec).__name__}"
    )


_WORKER_MODELS: dict[tuple[str, str], VisionModel] = {}


def _worker_device(device: str) -> str:
    """``"cuda"`` on a Dask worker of a machine with several GPUs: the worker's own one."""
    if device != "cuda" or not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    index = int(name) if isinstance(name, int) or str(name).isdigit() else abs(hash(name))
    return f"cuda:{index % torch.cuda.device_count()}"


def load_worker_model(spec: ModelSpec, device: str = "cpu", threads: int | None = None) -> VisionModel:
    """The model of ``spec`` on ``device``, loaded once per process (what each worker calls).

    The first call in a process also tunes glibc's allocator as the CLI does
    (:func:`spyglass.runtime.tune_allocator`) and, when ``threads`` is given, sets torch's
    thread count (a local cluster shares the machine's cores among its workers).
    """
    from spyglass import models
    from spyglass.runtime import tune_allocator

    if isinstance(spec, VisionModel):
        return spec
    key = (_spec_key(spec), device)
    if key not in _WORKER_MODELS:
        tune_allocator()
        if threads is not None:
            torch.set_num_threads(threads)
        where = _worker_device(device)
        model = models.load(spec, device=where) if isinstance(spec, str) else spec()
        if not isinstance(model, VisionModel):
            raise TypeError(f"model factory {key[0]} returned {type(model).__name__}, not a VisionModel")
        _WORKER_MODELS[key] = model.eval().to(where)
    return _WORKER_MODELS[key]


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of ``model``'s state dict: each tensor's name, dtype, shape and bytes, in name order.

    Examples
    --------
    >>> import torch
    >>> from spyglass.lens import weights_sha256
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> weights_sha256(a) == weights_sha256(a), weights_sha256(a) == weights_sha256(b)
    (True, False)
    """
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _full_names(model: VisionModel) -> tuple[str, ...]:
    from spyglass.data import imagenet_class_names, imagenet_descriptions

    if tuple(model.class_names) == imagenet_class_names():
        return imagenet_descriptions()
    return tuple(model.class_names)


def model_info(spec: ModelSpec, model: VisionModel) -> ModelInfo:
    """The identity of ``model`` (loaded from ``spec``) that an atlas records and checks."""
    from spyglass.models import default_layer

    return ModelInfo(
        name=_spec_key(spec),
        weights_sha256=weights_sha256(model),
        layer=default_layer(model),
        class_names=tuple(model.class_names),
        full_names=_full_names(model),
    )


# ----------------------------------------------------------------------------- jobs


def _read(model: VisionModel, path: Path) -> Tensor:
    with Image.open(path) as image:
        tensor: Tensor = model.preprocess(image.convert("RGB"))
    return tensor


def _predict_job(
    spec: ModelSpec, device: str, threads: int | None, paths: Sequence[str], batch_size: int
) -> list[int]:
    """The top-1 class of each image (-1 for a file that cannot be read)."""
    model = load_worker_model(spec, device, threads)
    tensors: list[Tensor] = []
    readable: list[int] = []
    for i, path in enumerate(paths):
        try:
            tensors.append(_read(model, Path(path)))
            readable.append(i)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    predicted = [-1] * len(paths)
    with torch.no_grad():
        for start in range(0, len(tensors), batch_size):
            batch = torch.stack(tensors[start : start + batch_size]).to(model.device)
            for offset, value in enumerate(model(batch).argmax(dim=1).tolist()):
                predicted[readable[start + offset]] = int(value)
    return predicted


def _encode(image: Image.Image, kind: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    if kind == "png":
        image.save(buffer, format="PNG", optimize=True)
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def _to_pil(image: Tensor) -> Image.Image:
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round()
    return Image.fromarray(array.astype(np.uint8))


# A perceptually ordered ramp (dark blue → red → yellow), so the overlays need no plotting library.
_RAMP = np.array(
    [[0.05, 0.03, 0.25], [0.45, 0.05, 0.55], [0.85, 0.2, 0.25], [1.0, 0.65, 0.05], [1.0, 1.0, 0.6]]
)


def _overlay(image: Tensor, heat: Tensor) -> Image.Image:
    """``image`` with ``heat`` (its positive part, scaled to its maximum) blended over it."""
    values = heat.detach().float().clamp(min=0).cpu().numpy()
    peak = float(values.max())
    values = values / peak if peak > 0 else values
    stops = np.linspace(0.0, 1.0, len(_RAMP))
    colour = np.stack([np.interp(values, stops, _RAMP[:, c]) for c in range(3)], axis=-1)
    photo = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    alpha = 0.25 + 0.5 * values[..., None]
    blended = (1 - alpha) * photo * 0.9 + alpha * colour
    return Image.fromarray((blended.clip(0, 1) * 255).round().astype(np.uint8))


def classical_mds(cosine: np.ndarray, dims: int = 2) -> np.ndarray:
    """2-D classical MDS of unit vectors from their cosines (``LAYOUT_METHOD``).

    With chord distances ``d² = 2 − 2 cos`` the double-centred matrix is the centred cosine
    (Gram) matrix, so the layout is the top principal components of the unit vectors. Signs are
    fixed (each axis's largest coordinate positive) so that equal inputs give equal layouts.

    Examples
    --------
    >>> import numpy as np
    >>> from spyglass.lens.build import classical_mds
    >>> v = np.eye(3)[:, :2] @ np.array([[1.0, 0.0], [0.6, 0.8]]).T  # two unit vectors
    >>> layout = classical_mds(v.T @ v)
    >>> round(float(np.linalg.norm(layout[0] - layout[1])), 4)  # the chord sqrt(2 - 2 * 0.6)
    0.8944
    """
    gram = np.asarray(cosine, dtype=np.float64)
    n = gram.shape[0]
    centring = np.eye(n) - np.full((n, n), 1.0 / n)
    values, vectors = np.linalg.eigh(centring @ gram @ centring)
    order = np.argsort(values)[::-1][:dims]
    coords = vectors[:, order] * np.sqrt(np.clip(values[order], 0.0, None))
    for axis in range(coords.shape[1]):
        if coords[np.argmax(np.abs(coords[:, axis])), axis] < 0:
            coords[:, axis] *= -1
    if coords.shape[1] < dims:
        coords = np.pad(coords, ((0, 0), (0, dims - coords.shape[1])))
    return coords


def _class_job(
    spec: ModelSpec,
    device: str,
    threads: int | None,
    class_id: int,
    paths: Sequence[str],
    settings: AtlasSettings,
) -> ClassRecord | _ClassFailure:
    """One class, end to end, as a compact record (or its failure): what a worker runs."""
    start = time.perf_counter()
    try:
        return _class_record(load_worker_model(spec, device, threads), class_id, paths, settings, start)
    except Exception as error:  # the class fails, the build goes on
        _ATLAS_LOG.debug("class %d failed:\n%s", class_id, traceback.format_exc())
        message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        return _ClassFailure(class_id, message, time.perf_counter() - start)


def _class_record(
    model: VisionModel, class_id: int, paths: Sequence[str], settings: AtlasSettings, start: float
) -> ClassRecord:
    from spyglass.concepts import class_concepts

    if len(paths) < settings.min_images:
        raise ValueError(
            f"the model predicts {len(paths)} image(s) of the folder as class {class_id}; an atlas "
            f"page needs at least {settings.min_images} (min_images)"
        )
    images = torch.stack([_read(model, Path(path)) for path in paths])
    record = class_concepts(
        model,
        images,
        class_id,
        n_concepts=settings.n_concepts,
        patch_size=settings.patch_size,
        importance="gradient_input",
        n_crops=settings.n_crops,
        n_maps=settings.n_maps,
        render=settings.maco_steps > 0,
        maco_steps=max(settings.maco_steps, 1),
        maco_size=settings.maco_size,
        maco_crops=settings.maco_crops,
        alignment_top_k=settings.alignment_top_k,
        strategic=True,
        min_share=settings.min_share,
        seed=settings.seed,
        batch_size=settings.batch_size,
        progress=False,
    )
    assert record.logit_share is not None and record.logit_share_per_image is not None
    assert record.strategic is not None
    if float(record.logits.mean()) <= 0:
        raise ValueError(
            f"the mean logit of class {class_id} on its images is {float(record.logits.mean()):.3g} <= 0: "
            "shares of the logit are undefined"
        )
    prefix = f"files/{class_id}"
    quality = settings.jpeg_quality
    files: dict[str, bytes] = {}

    def put(name: str, image: Image.Image, kind: str = "jpg") -> str:
        path = f"{prefix}/{name}.{kind}"
        files[path] = _encode(image, kind, quality)
        return path

    image_files, thumbs = [], []
    for j in range(images.shape[0]):
        photo = _to_pil(images[j])
        image_files.append(put(f"image-{j}", photo))
        thumb = photo.copy()
        thumb.thumbnail((settings.thumb_size, settings.thumb_size))
        thumbs.append(put(f"thumb-{j}", thumb))
    renders: list[str | None] = []
    crops: list[list[str]] = []
    concept_maps: list[list[tuple[int, str]]] = []
    for evidence in record.evidence:
        k = evidence.concept
        rendering = evidence.rendering
        renders.append(
            None if rendering is None else put(f"concept-{k}-render", _to_pil(rendering.image), "png")
        )
        crops.append([put(f"concept-{k}-crop-{i}", _to_pil(crop)) for i, crop in enumerate(evidence.crops)])
        concept_maps.append(
            [
                (int(j), put(f"concept-{k}-map-{int(j)}", _overlay(images[int(j)], heat)))
                for j, heat in zip(evidence.map_images.tolist(), evidence.maps, strict=True)
            ]
        )
    vectors = record.concepts.numpy().astype(np.float32)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    similarity = np.clip(unit.astype(np.float64) @ unit.T.astype(np.float64), -1.0, 1.0)
    top_classes: list[list[tuple[int, float]]] = [[] for _ in range(record.n_concepts)]
    if record.alignment is not None:
        top_classes = [
            [(int(c), float(v)) for c, v in zip(ids.tolist(), cos.tolist(), strict=True)]
            for ids, cos in zip(record.alignment.top_classes, record.alignment.top_cosines, strict=True)
        ]
    graph = record.strategic
    return ClassRecord(
        class_id=class_id,
        logit_mean=float(record.logits.mean()),
        importance=record.importance.numpy().astype(np.float64),
        shares=record.logit_share.numpy().astype(np.float64),
        ranked=list(record.ranked),
        important=[int(k) for k in graph.important],
        image_shares=graph.shares.numpy().astype(np.float64),
        vectors=vectors,
        top_classes=top_classes,
        layout=classical_mds(similarity),
        similarity=similarity,
        renders=renders,
        crops=crops,
        concept_maps=concept_maps,
        sources=list(paths),
        image_files=image_files,
        thumbs=thumbs,
        points=graph.embedding.numpy().astype(np.float64),
        dominant=graph.dominant.numpy().astype(np.int64),
        image_logit_shares=record.logit_share_per_image.numpy().astype(np.float64),
        seconds=time.perf_counter() - start,
        files=files,
    )


# ----------------------------------------------------------------------------- running


class _Runner:
    """Runs jobs in process, or on Dask (``client``), yielding ``(key, result)`` as each ends."""

    def __init__(self, client: Any = None) -> None:
        self.client = client

    def run(
        self, jobs: Sequence[tuple[Any, Callable[..., Any], tuple[Any, ...]]]
    ) -> Iterator[tuple[Any, Any]]:
        if self.client is None:
            for key, function, arguments in jobs:
                try:
                    yield key, function(*arguments)
                except Exception as error:  # same contract as a failed future
                    yield key, error
            return
        from distributed import as_completed

        futures = {}
        for key, function, arguments in jobs:
            # retries: a job whose worker died, or that raised outside its own error handling,
            # is run again (a lost worker is also rescheduled by the scheduler on its own).
            future = self.client.submit(function, *arguments, pure=False, retries=2)
            futures[future] = key
        for future in as_completed(futures):
            key = futures.pop(future)
            try:
                yield key, future.result()
            except Exception as error:  # KilledWorker and the like
                yield key, error
            finally:
                future.release()


def _bar(total: int, enabled: bool, desc: str, unit: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, dynamic_ncols=True)


def _predictions(
    atlas: Atlas, runner: _Runner, spec: Any, device: str, threads: int | None, data: Path,
    settings: AtlasSettings, progress: bool,
) -> list[tuple[str, int, int]]:  # fmt: skip
    stored = atlas.predictions()
    if stored is not None:
        return stored
    from spyglass.data import find_images

    entries = find_images(data)
    relative = [Path(os.path.relpath(path, data)).as_posix() for path, _ in entries]
    chunks = []
    for start in range(0, len(relative), _PREDICT_CHUNK):
        paths = [str(data / p) for p in relative[start : start + _PREDICT_CHUNK]]
        chunks.append((start, _predict_job, (spec, device, threads, paths, settings.batch_size)))
    predicted = [-1] * len(relative)
    bar = _bar(len(relative), progress, "predicting the folder", "img")
    try:
        for start, result in runner.run(chunks):
            if isinstance(result, BaseException):
                raise RuntimeError(f"predicting images {start}… of {data} failed: {result}") from result
            predicted[start : start + len(result)] = result
            bar.update(len(result))
    finally:
        bar.close()
    rows = [(p, int(label), c) for p, (_, label), c in zip(relative, entries, predicted, strict=True)]
    atlas.store_predictions(rows)
    return rows


def _link_concepts(atlas: Atlas, settings: AtlasSettings) -> None:
    """Each concept's most similar concepts of other classes (the ``similar_rule``)."""
    banks = atlas.concept_vectors()
    if not banks or settings.similar_top_k == 0:
        atlas.store_links({})
        return
    owners = np.concatenate([np.full(len(bank), cid) for cid, bank in banks.items()])
    indices = np.concatenate([np.arange(len(bank)) for bank in banks.values()])
    vectors = np.concatenate(list(banks.values())).astype(np.float64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    links: dict[tuple[int, int], list[tuple[int, int, float]]] = {}
    row = 0
    for cid, bank in banks.items():
        block = unit[row : row + len(bank)] @ unit.T  # (r, all)
        block[:, owners == cid] = -np.inf
        for k in range(len(bank)):
            order = np.argsort(-block[k], kind="stable")[: settings.similar_top_k]
            kept = [
                (int(owners[j]), int(indices[j]), float(block[k, j]))
                for j in order
                if block[k, j] >= settings.similar_threshold
            ]
            if kept:
                links[(cid, k)] = kept
        row += len(bank)
    atlas.store_links(links)


def _cluster(workers: int | None, scheduler: str | None) -> tuple[Any, Any, int | None]:
    """``(client, cluster or None, torch threads per worker)`` for a Dask build."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler), None, None
    assert workers is not None
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,  # one class at a time per process: torch uses the cores
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster, max(1, (os.cpu_count() or 1) // workers)


def build_atlas(
    model: ModelSpec,
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    classes: Iterable[int] | None = None,
    settings: AtlasSettings | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    device: str = "cpu",
    fast: bool = False,
    progress: bool = True,
) -> BuildSummary:
    """Build (or resume) the atlas of ``model`` on the images of ``data_dir`` into ``out``.

    Lens's atlas (Fel et al., "Sparks of Explainability" thesis; CRAFT, CVPR 2023) for any
    model and folder; see the module docstring for the steps. Finished classes are never
    recomputed; failed ones are retried; a build with another model, layer, data folder or
    settings into ``out`` is refused.

    Parameters
    ----------
    model
        A :func:`spyglass.models.load` name or model file (what Dask workers load), a
        top-level function returning a :class:`VisionModel`, or a :class:`VisionModel`
        (in-process builds only; used where it is, ``device`` aside).
    data_dir
        The image folder (flat, or one sub-folder per class; labels are not used: the model's
        predictions choose each class's images).
    out
        The atlas folder (created, or resumed).
    classes
        Class ids to build (default: every class predicted for at least ``min_images``
        images). A requested class with too few images is recorded as failed.
    settings
        :class:`AtlasSettings` (default: its defaults, or :data:`FAST` when ``fast``).
    workers
        Run on a Dask ``LocalCluster`` of this many worker processes.
    scheduler
        Run on the existing Dask cluster at this address (``tcp://host:8786``).
    device
        Where workers run the model (``"cuda"`` on a machine with several GPUs gives each
        local worker its own).
    fast
        Use the :data:`FAST` preset (when ``settings`` is not given).
    progress
        One progress bar over the classes: finished and failed counts, elapsed and remaining time.

    Returns
    -------
    BuildSummary

    Raises
    ------
    AtlasMismatchError
        ``out`` holds an atlas built differently.
    TypeError, ValueError
        Bad arguments (checked before any work).

    Examples
    --------
    >>> from spyglass.lens import Atlas, build_atlas
    >>> build_atlas("efficientnet_lite0", "photos/", "atlas/", classes=[0], fast=True)  # doctest: +SKIP
    >>> Atlas.open("atlas/").class_document(0)["concepts"][0]["share"]  # doctest: +SKIP
    0.2615
    """
    started = time.perf_counter()
    if settings is None:
        settings = FAST if check_bool(fast, "fast") else AtlasSettings()
    elif not isinstance(settings, AtlasSettings):
        raise TypeError(f"settings must be an AtlasSettings; got {type(settings).__name__}")
    check_bool(progress, "progress")
    _spec_key(model)  # a bad spec fails before any work
    if workers is not None and scheduler is not None:
        raise ValueError("give workers (a local cluster) or scheduler (an existing one), not both")
    if workers is not None:
        workers = check_int(workers, "workers", 1)
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
        raise TypeError(f"scheduler must be an address such as 'tcp://host:8786'; got {scheduler!r}")
    distributed = workers is not None or scheduler is not None
    if distributed and isinstance(model, VisionModel):
        raise TypeError(
            "a Dask build needs a model spec the workers can load (a models.load name or file, or a "
            "top-level function), not a model object"
        )
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda'; got {type(device).__name__}")
    try:
        torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be a device name such as 'cpu' or 'cuda:0'; got {device!r}") from None
    if scheduler is None:
        from spyglass.validation import check_device

        check_device(device)
    data = Path(data_dir)
    if not data.exists():
        raise ValueError(f"no such folder: {data}")
    if not data.is_dir():
        raise ValueError(f"data folder {data} is a file; give a folder of images")
    data = data.resolve()
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ValueError(f"atlas folder {root} is a file; give a folder's path")

    # The client's copy of the model gives its identity (hash, layer, names); in process it computes too.
    local = load_worker_model(model, "cpu" if distributed else device)
    info = model_info(model, local)
    requested: list[int] | None = None
    if classes is not None:
        requested = sorted({check_int(c, "class id", 0, maximum=len(info.class_names) - 1) for c in classes})
        if not requested:
            raise ValueError("classes is empty; give class ids, or None for every predicted class")

    atlas = Atlas.open_or_create(root, info, settings.as_dict(), data=str(data), rules=settings.rules())
    client = cluster = None
    built: list[int] = []
    failed: list[int] = []
    try:
        with atlas.writer_lock():
            threads = None
            if distributed:
                client, cluster, threads = _cluster(workers, scheduler)
            runner = _Runner(client)
            rows = _predictions(atlas, runner, model, device, threads, data, settings, progress)
            by_class: dict[int, list[str]] = {}
            for path, _label, predicted in rows:
                if predicted >= 0:
                    by_class.setdefault(predicted, []).append(str(data / path))
            if requested is None:
                wanted = sorted(c for c, paths in by_class.items() if len(paths) >= settings.min_images)
            else:
                wanted = requested
            finished = atlas.finished_classes()
            skipped = [c for c in wanted if c in finished]
            todo = [c for c in wanted if c not in finished]
            jobs = [
                (
                    c,
                    _class_job,
                    (model, device, threads, c, by_class.get(c, [])[: settings.max_images], settings),
                )
                for c in todo
            ]
            bar = _bar(len(jobs), progress, "atlas classes", "class")
            try:
                for class_id, result in runner.run(jobs):
                    if isinstance(result, ClassRecord):
                        atlas.write_class(result)
                        built.append(class_id)
                    else:
                        if isinstance(result, _ClassFailure):
                            message, seconds = result.error, result.seconds
                        else:
                            message, seconds = f"{type(result).__name__}: {result}", 0.0
                        atlas.record_failure(class_id, message, seconds)
                        failed.append(class_id)
                    bar.set_postfix_str(f"done {len(built) + len(skipped)}, failed {len(failed)}")
                    bar.update(1)
            finally:
                bar.close()
            _link_concepts(atlas, settings)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        atlas.close()
    return BuildSummary(
        root=root,
        built=tuple(sorted(built)),
        failed=tuple(sorted(failed)),
        skipped=tuple(skipped),
        seconds=time.perf_counter() - started,
    )
