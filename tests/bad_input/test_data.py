"""The bad-input contract of :mod:`spyglass.data`: sources, options, transforms, hostile files."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from spyglass import data
from tests.bad_input.contract import accepts, refuses


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return pil_to_tensor(image.resize((8, 8))).float() / 255


def _folder(root: Path, n: int = 3) -> Path:
    folder = root / "photos"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        Image.new("RGB", (12, 10), (40 * i, 20, 200)).save(folder / f"photo{i}.png")
    return folder


def write_bomb(path: Path, factor: float = 2.5) -> Path:
    """A PNG of a few bytes whose header claims ``factor`` times PIL's decompression-bomb limit.

    PIL warns past the limit and refuses past twice it, on opening, before decoding a pixel;
    so a 1×1 PNG with its header's size (and the header's checksum) rewritten is enough.
    """
    limit = Image.MAX_IMAGE_PIXELS
    assert limit is not None
    side = int((limit * factor) ** 0.5) + 1
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    # Signature (8 bytes), then the IHDR chunk: length (4), type (4), width and height (4 each)...
    png[16:24] = struct.pack(">II", side, side)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    path.write_bytes(bytes(png))
    return path


@given(limit=st.one_of(st.integers(max_value=0), st.floats(), st.sampled_from(["2", True, [1]])))
def test_limit_must_be_a_positive_int(limit: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    # limit=-1 used to drop the last image silently (entries[:-1]).
    folder = _folder(tmp_path_factory.mktemp("limit"))
    refuses("data.read_images", lambda: data.read_images(folder, _to_tensor, limit=limit, progress=False))  # type: ignore[arg-type]


@given(per_class=st.one_of(st.integers(max_value=0), st.floats(), st.just("1")))
def test_per_class_must_be_a_positive_int(
    per_class: object, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = _folder(tmp_path_factory.mktemp("per_class"))
    refuses(
        "data.read_images",
        lambda: data.read_images(folder, _to_tensor, per_class=per_class, progress=False),  # type: ignore[arg-type]
    )


@given(source=st.sampled_from([None, 5, b"photos", [None], [3.5], [], "", ["a\x00b"], "/no/such/dir"]))
def test_malformed_sources_are_refused(source: object) -> None:
    refuses("data.find_images", lambda: data.find_images(source))  # type: ignore[arg-type]


@given(transform=st.sampled_from([None, "preprocess", 5]))
def test_the_transform_must_be_callable(transform: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = _folder(tmp_path_factory.mktemp("transform"))
    refuses("data.read_images", lambda: data.read_images(folder, transform, progress=False))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "transform",
    [lambda image: "a string", lambda image: torch.zeros(8, 8), lambda image: torch.zeros(1, 8, 8)],
    ids=["not a tensor", "no channels", "one channel"],
)
def test_a_transform_that_gives_no_image_is_refused(transform: object, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    refuses(
        "data.read_images", lambda: data.read_images(folder, transform, progress=False), match="transform"
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("factor", [1.5, 2.5], ids=["warning-sized", "error-sized"])
def test_a_decompression_bomb_is_a_skipped_file_with_the_reason(factor: float, tmp_path: Path) -> None:
    folder = _folder(tmp_path, n=2)
    bomb = write_bomb(folder / "bomb.png", factor)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = accepts("data.read_images", lambda: data.read_images(folder, _to_tensor, progress=False))
    assert isinstance(batch, data.ImageSet) and len(batch) == 2 and bomb not in batch.paths
    skipped = [w for w in caught if issubclass(w.category, data.UnreadableImagesWarning)]
    assert len(skipped) == 1 and "skipped 2 unreadable" in str(skipped[0].message)
    assert f"{bomb} (DecompressionBombError" in str(skipped[0].message)
    # The warning points at the caller's line, not at spyglass's own.
    assert Path(skipped[0].filename).resolve() == Path(__file__).resolve()


def test_only_bombs_is_one_sentence(tmp_path: Path) -> None:
    folder = tmp_path / "bombs"
    folder.mkdir()
    write_bomb(folder / "bomb.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", data.UnreadableImagesWarning)
        refuses(
            "data.read_images",
            lambda: data.read_images(folder, _to_tensor, progress=False),
            match="could be read",
        )


@given(names=st.sampled_from(["coffee", 5, [5], ["cofee"], [], None.__class__]))
def test_sample_photos_refuse_what_names_no_photo(names: object) -> None:
    refuses("data.sample_photos", lambda: data.sample_photos(names))  # type: ignore[arg-type]


def test_preprocess_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    from tests.tiny import tiny_model

    model = tiny_model()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    for path in (broken, tmp_path / "absent.png", write_bomb(tmp_path / "bomb.png")):
        refuses("models.VisionModel.preprocess", lambda path=path: model.preprocess(path), match=str(path))
    refuses("models.VisionModel.preprocess", lambda: model.preprocess(5), match="PIL image")  # type: ignore[arg-type]
