"""The demo's atlas: Lens on what ships offline, the bundled photos and variants of each.

An atlas needs a folder of photos per class; offline, the demo has seven photos. Each is
turned into a few variants (seeded random crops, flips and small colour changes), written
as JPEG files into a data folder, and :func:`spyglass.lens.build_atlas` builds, with
:data:`DEMO_ATLAS` (lighter than the :data:`~spyglass.lens.FAST` preset), the classes the
model predicts for enough of them (Lens's rule: a class's images are those predicted as
it). The viewer then shows it like any atlas.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from spyglass.data.samples import sample_photos
from spyglass.lens import FAST, Atlas, AtlasSettings, build_atlas, export_site
from spyglass.models import DEFAULT_MODEL
from spyglass.validation import check_int

__all__ = ["DEMO_ATLAS", "DEMO_VARIANTS", "build_demo_atlas", "photo_variants"]

# Variants per bundled photo: 7 photos × 8 variants, of which a class needs min_images (4).
DEMO_VARIANTS = 8
# Cheaper than FAST, for a 2-core CPU: 6 images a class, 4 concepts from 112 px crops (4 a
# photo, not FAST's 16), 8 MACO steps of one crop; about 7 classes come out of the variants.
DEMO_ATLAS = AtlasSettings(
    **{
        **FAST.as_dict(),
        "max_images": 6,
        "n_concepts": 4,
        "patch_size": 112,
        "n_crops": 4,
        "n_maps": 1,
        "maco_steps": 8,
        "maco_crops": 1,
    }
)


def photo_variants(photo: Image.Image, count: int, seed: int) -> list[Image.Image]:
    """``count`` seeded variants of ``photo``: a crop of 55–100 % of its side, maybe mirrored, recoloured.

    Examples
    --------
    >>> from spyglass.data import sample_photos
    >>> from spyglass.demo.atlas import photo_variants
    >>> variants = photo_variants(sample_photos(["coffee"])["coffee"], 3, seed=0)
    >>> len(variants), variants[0].mode
    (3, 'RGB')
    """
    count = check_int(count, "count", 1)
    rng = np.random.default_rng(seed)
    width, height = photo.size
    variants = []
    for _ in range(count):
        scale = rng.uniform(0.55, 1.0)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        image = photo.convert("RGB").crop((left, top, left + w, top + h))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.2))
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
        variants.append(image)
    return variants


def build_demo_atlas(
    out: str | Path = "out/demo/atlas",
    *,
    model_name: str = DEFAULT_MODEL,
    variants: int = DEMO_VARIANTS,
    settings: AtlasSettings = DEMO_ATLAS,
    progress: bool = True,
) -> Path:
    """Build the demo's atlas from the bundled photos into ``out``; return its root.

    The variants go to ``out/photos/`` (``coffee-0.jpg``, …: a flat folder, the photos'
    names being no class ids) and the atlas to ``out/atlas/``; a rerun resumes it (or
    refuses another model or settings).

    Examples
    --------
    >>> from spyglass.demo.atlas import build_demo_atlas
    >>> build_demo_atlas("out/demo/atlas")  # doctest: +SKIP
    PosixPath('out/demo/atlas/atlas')
    """
    out = Path(out)
    variants = check_int(variants, "variants", 1)
    photos_dir = out / "photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    for index, (name, photo) in enumerate(sample_photos().items()):
        for j, image in enumerate(photo_variants(photo, variants, seed=index)):
            target = photos_dir / f"{name}-{j}.jpg"
            if not target.exists():  # the same seed gives the same file: a rerun resumes
                image.save(target, quality=90)
    root = out / "atlas"
    build_atlas(model_name, photos_dir, root, settings=settings, progress=progress)
    return root


def main(argv: list[str] | None = None) -> None:
    """``python -m spyglass.demo.atlas [OUT]``: build the demo's atlas, export its site, print both paths."""
    from spyglass.runtime import tune_allocator

    tune_allocator()  # as the CLI does: an entry point of spyglass's own
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "out/demo/atlas")
    atlas = Atlas.open(build_demo_atlas(out))
    try:
        index = export_site(atlas, out / "site")
    finally:
        atlas.close()
    print(f"atlas: {atlas.root}")
    print(f"open {index.resolve()} in a browser (or: spyglass lens serve {atlas.root})")


if __name__ == "__main__":
    main()
