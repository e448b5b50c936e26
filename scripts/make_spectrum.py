"""Build the natural-image magnitude spectrum that MACO ships as package data.

MACO (Fel, Boissin et al., NeurIPS 2023) fixes the Fourier amplitude of the image it
optimises to that of natural images and learns only the phase. This script measures that
amplitude on a folder of photos, once, so that the library needs no download:

1. every photo is read as RGB in [0, 1], its shorter side resized to ``--size`` and
   centre-cropped to ``--size × --size``;
2. the RGB covariance of all pixels gives the colour "square root" ``C = U √S`` (from
   ``cov = U S Uᵀ``), scaled so that its largest column has unit norm, as in Lucid;
   ``C`` maps decorrelated colour channels back to RGB;
3. each photo, centred by the mean colour, is decorrelated (``z = C⁻¹ (x − μ)``), and the
   magnitude of its real 2-D FFT, ``|rfft2(z)|`` per channel, is averaged over photos.

Writes ``natural_spectrum.npy`` (float32 ``(3, size, size // 2 + 1)``, the layout of
``torch.fft.rfft2``) and ``natural_spectrum.json`` (provenance and ``C``) into
``src/spyglass/featureviz/``.

Run from the repository root::

    python scripts/make_spectrum.py --photos ../shared/data/imagenette-val
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as tf

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = REPO_ROOT.parent / "shared" / "data" / "imagenette-val"
DEFAULT_OUT = REPO_ROOT / "src" / "spyglass" / "featureviz"
EXTENSIONS = {".jpg", ".jpeg", ".png"}


def read_photo(path: Path, size: int) -> torch.Tensor:
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    image = tf.resize(image, size, interpolation=tf.InterpolationMode.BILINEAR, antialias=True)
    image = tf.center_crop(image, [size, size])
    return tf.pil_to_tensor(image).double().div_(255.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of photos (recursive)")
    parser.add_argument("--size", type=int, default=160, help="side of the square crops (default 160)")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many photos")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the .npy and .json")
    args = parser.parse_args()

    paths = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in EXTENSIONS)[: args.limit]
    if not paths:
        raise SystemExit(f"no photos found under {args.photos}")
    photos = torch.stack([read_photo(path, args.size) for path in paths])  # (N, 3, S, S) float64

    pixels = photos.permute(0, 2, 3, 1).reshape(-1, 3)
    mean = pixels.mean(dim=0)
    covariance = torch.cov(pixels.T)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    order = eigenvalues.argsort(descending=True)  # luminance first
    sqrt = eigenvectors[:, order] * eigenvalues[order].sqrt()
    sqrt = sqrt * torch.sign(sqrt[:, :1].sum())  # a positive luminance axis
    sqrt = sqrt / sqrt.norm(dim=0).max()

    centred = photos - mean.view(1, 3, 1, 1)
    decorrelated = torch.einsum("ij,njhw->nihw", torch.linalg.inv(sqrt), centred)
    magnitude = torch.fft.rfft2(decorrelated).abs().mean(dim=0).float().numpy()

    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "natural_spectrum.npy", magnitude)
    provenance = {
        "what": "mean magnitude |rfft2(z)| of natural photos in decorrelated colour space "
        "(torch.fft.rfft2 layout)",
        "shape": list(magnitude.shape),
        "dtype": "float32",
        "source": str(args.photos.resolve()),
        "source_description": "Imagenette validation split (160 px version), a 10-class ImageNet subset",
        "number_of_photos": len(paths),
        "size": args.size,
        "preprocessing": f"RGB in [0, 1], shorter side resized to {args.size} (bilinear, antialiased), "
        f"centre crop {args.size}x{args.size}, no window",
        "colour_mean": [round(float(v), 6) for v in mean],
        "colour_correlation_sqrt": [[round(float(v), 6) for v in row] for row in sqrt],
        "colour_method": "C = U sqrt(S) from the pixel covariance U S U^T, columns by decreasing "
        "eigenvalue, scaled so that the largest column norm is 1; rgb - mean = C z",
        "method": "z = C^-1 (x - colour_mean) per photo; magnitude = mean over photos of |rfft2(z)|",
        "script": "scripts/make_spectrum.py",
        "date": dt.date.today().isoformat(),
        "torch": torch.__version__,
    }
    (args.out / "natural_spectrum.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"{len(paths)} photos -> {args.out / 'natural_spectrum.npy'} {magnitude.shape}")


if __name__ == "__main__":
    main()
