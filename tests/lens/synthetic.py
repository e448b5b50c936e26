"""A synthetic document source for the viewer's tests: real PNG files, documents of the contract's shape.

The atlas contract (issue 16) fixes what a document source returns; this one makes its documents
from a seed instead of a model, so the viewer can be tested before, and apart from, the builder.
Every number is rounded to 4 significant digits as the store does, every file is a real PNG under
``root/files/<class_id>/`` (when ``write_files``), and every image has a thumbnail, so a test can
check that every point of a graph shows one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _round(value: float) -> float:
    return float(f"{value:.4g}")


@dataclass(frozen=True)
class ClassSpec:
    id: int
    short: str
    name: str
    status: str = "done"
    error: str | None = None


SMALL = (
    ClassSpec(0, "crane", "crane, Grus (large long-necked wading bird)"),
    ClassSpec(1, "crane", "crane (lifts and moves heavy objects)"),
    ClassSpec(2, "tench", "tench, Tinca tinca", "failed", "RuntimeError: CUDA out of memory (synthetic)"),
    ClassSpec(3, "goldfish", "goldfish, Carassius auratus", "pending"),
)


@dataclass
class SyntheticAtlas:
    """A document source with the given classes, ``n_images`` images and ``n_concepts`` concepts each.

    ``write_files=False`` makes the documents without writing their files (for page-weight checks
    over 1,000 classes, where only the documents' sizes matter); a set of class ids writes the files
    of those classes only (a benchmark that opens a few pages of a 1,000-class atlas).
    """

    root: Path
    classes: tuple[ClassSpec, ...] = SMALL
    n_images: int = 20
    n_concepts: int = 5
    n_crops: int = 4
    maps_per_concept: int = 3
    write_files: bool | frozenset[int] = True
    seed: int = 0
    _documents: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        for spec in self.classes:
            if spec.status == "done":
                self._documents[spec.id] = self._build(spec)

    @classmethod
    def many(cls, root: Path, n_classes: int, **settings: Any) -> SyntheticAtlas:
        """``n_classes`` classes named after ImageNet's, all done (a viewer load test's atlas)."""
        from spyglass.data import imagenet_class_names

        names = imagenet_class_names()
        specs = tuple(
            ClassSpec(i, names[i % len(names)], f"{names[i % len(names)]} (synset n{i:08d})")
            for i in range(n_classes)
        )
        return cls(root, specs, **settings)

    # -- the contract ---------------------------------------------------------------------------

    def provenance(self) -> dict[str, Any]:
        return {
            "model": "synthetic_resnet",
            "weights_sha256": "0123456789abcdef" * 4,
            "layer": "layer4",
            "spyglass_version": "0.1.0",
            "data": "/data/synthetic",
            "created": "2026-12-02",
            "settings": {
                "n_concepts": self.n_concepts,
                "images_per_class": self.n_images,
                "similar": ">= 0.5",
            },
        }

    def index_document(self) -> dict[str, Any]:
        entries = []
        for spec in self.classes:
            document = self._documents.get(spec.id)
            entries.append(
                {
                    "id": spec.id,
                    "short": spec.short,
                    "name": spec.name,
                    "status": spec.status,
                    "n_images": document["n_images"] if document else 0,
                    "n_important": sum(c["important"] for c in document["concepts"]) if document else 0,
                    "error": spec.error,
                }
            )
        return {"provenance": self.provenance(), "classes": sorted(entries, key=lambda e: e["id"])}

    def class_document(self, class_id: int) -> dict[str, Any]:
        return self._documents[class_id]  # KeyError when not done, as the contract says

    # -- making one class -----------------------------------------------------------------------

    def _writes(self, class_id: int) -> bool:
        if isinstance(self.write_files, frozenset):
            return class_id in self.write_files
        return self.write_files

    def _png(self, relative: str, colour: np.ndarray, size: int) -> str:
        if self._writes(int(relative.split("/")[1])):
            # The pixels' own seed: the documents are the same whether the files are written or not.
            noise = np.random.default_rng(zlib.crc32(relative.encode())).integers(0, 40, size=(size, size, 3))
            pixels = np.clip(colour[None, None, :] + noise, 0, 255).astype(np.uint8)
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
        return relative

    def _build(self, spec: ClassSpec) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, spec.id])
        r, n = self.n_concepts, self.n_images
        base = f"files/{spec.id}"
        colours = rng.integers(0, 215, size=(r, 3))
        shares_per_image = rng.dirichlet(np.full(r, 0.7), size=n) * 0.9
        dominant = shares_per_image.argmax(axis=1)
        mean_shares = shares_per_image.mean(axis=0)
        order = np.argsort(-mean_shares)
        image_share = np.bincount(dominant, minlength=r) / n
        points = rng.normal(size=(n, 2)) + 3 * rng.normal(size=(r, 2))[dominant]
        vectors = rng.normal(size=(r, 8))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        similarity = vectors @ vectors.T
        layout = rng.normal(size=(r, 2))
        others = [s for s in self.classes if s.id != spec.id and s.status == "done"] or [spec]

        image_maps: dict[int, list[dict[str, Any]]] = {i: [] for i in range(n)}
        concepts = []
        for k in order:
            k = int(k)
            strongest = np.argsort(-shares_per_image[:, k])[: self.maps_per_concept]
            maps = []
            for i in strongest:
                file = self._png(f"{base}/map-{k}-{int(i)}.png", colours[k], 24)
                maps.append({"image": int(i), "file": file})
                image_maps[int(i)].append({"concept": k, "file": file})
            aligned = [
                others[int(j)] for j in rng.choice(len(others), size=min(5, len(others)), replace=False)
            ]
            concepts.append(
                {
                    "index": k,
                    "share": _round(mean_shares[k]),
                    "important": bool(image_share[k] >= 0.1),
                    "image_share": _round(image_share[k]),
                    "render": self._png(f"{base}/concept-{k}-render.png", colours[k], 48),
                    "crops": [
                        self._png(f"{base}/concept-{k}-crop-{c}.png", colours[k], 32)
                        for c in range(self.n_crops)
                    ],
                    "maps": maps,
                    "top_classes": [
                        {"id": s.id, "short": s.short, "cosine": _round(0.9 - 0.1 * j)}
                        for j, s in enumerate(aligned)
                    ],
                    "layout": [_round(layout[k, 0]), _round(layout[k, 1])],
                    "similar": [
                        {
                            "class": s.id,
                            "short": s.short,
                            "concept": int((k + j) % r),
                            "cosine": _round(0.8 - 0.05 * j),
                        }
                        for j, s in enumerate(aligned)
                        if s.id != spec.id
                    ],
                }
            )
        images = []
        for i in range(n):
            colour = colours[dominant[i]]
            images.append(
                {
                    "index": i,
                    "file": self._png(f"{base}/image-{i}.png", colour, 64),
                    "thumb": self._png(f"{base}/thumb-{i}.png", colour, 16),
                    "point": [_round(points[i, 0]), _round(points[i, 1])],
                    "dominant": int(dominant[i]),
                    "shares": [_round(v) for v in shares_per_image[i]],
                    "maps": image_maps[i],
                }
            )
        return {
            "id": spec.id,
            "short": spec.short,
            "name": spec.name,
            "provenance": self.provenance(),
            "n_images": n,
            "logit_mean": _round(7.5 + spec.id % 3),
            "residual_share": _round(1 - mean_shares.sum()),
            "important_rule": "top concept of >= 10% of the images",
            "concepts": concepts,
            "similarity": [[_round(v) for v in row] for row in similarity],
            "images": images,
        }
