"""Reading files and folders, labels from WordNet ids or indices, unreadable files."""

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from spyglass import data
from spyglass.data import UnreadableImagesWarning, find_images, read_images


def to_tensor(image: Image.Image) -> torch.Tensor:
    return pil_to_tensor(image.resize((8, 8))).float() / 255


def write(path: Path, color: tuple[int, int, int] = (255, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), color).save(path)
    return path


def test_imagenet_metadata_by_hand() -> None:
    # Facts from the shared data README: folder n02102040 is index 217, English springer.
    names, wnids = data.imagenet_class_names(), data.imagenet_wnids()
    assert len(names) == len(wnids) == 1000
    assert (names[0], wnids[0]) == ("tench", "n01440764")
    assert (names[217], wnids[217]) == ("English springer", "n02102040")
    assert data.wnid_to_index()["n03888257"] == 701 and names[701] == "parachute"


def test_imagefolder_with_wordnet_ids(tmp_path: Path) -> None:
    write(tmp_path / "n02102040" / "b.jpg")
    write(tmp_path / "n02102040" / "a.png")
    write(tmp_path / "n01440764" / "c.jpg", (0, 255, 0))
    (tmp_path / "n01440764" / "notes.txt").write_text("not an image")
    found = find_images(tmp_path)
    assert [(p.name, label) for p, label in found] == [("c.jpg", 0), ("a.png", 217), ("b.jpg", 217)]
    batch = read_images(tmp_path, to_tensor, progress=False)
    assert batch.images.shape == (3, 3, 8, 8)
    assert batch.labels.tolist() == [0, 217, 217]
    assert batch.names == ["c", "a", "b"]
    assert float(batch.images[0, 1].mean()) == pytest.approx(1.0)  # the green one came first


def test_imagefolder_with_indices_and_flat_files(tmp_path: Path) -> None:
    write(tmp_path / "idx" / "5" / "x.jpg")
    write(tmp_path / "idx" / "42" / "y.jpg")
    assert [label for _, label in find_images(tmp_path / "idx")] == [42, 5]  # sorted folder names
    write(tmp_path / "flat" / "n01440764_tench.jpg")
    write(tmp_path / "flat" / "holiday.jpg")
    assert [label for _, label in find_images(tmp_path / "flat")] == [-1, 0]
    files = [tmp_path / "flat" / "holiday.jpg", tmp_path / "idx" / "5" / "x.jpg"]
    assert [p for p, _ in find_images(files)] == files


def test_limit_and_per_class(tmp_path: Path) -> None:
    for wnid in ("n01440764", "n02102040"):
        for i in range(3):
            write(tmp_path / wnid / f"{i}.jpg")
    assert read_images(tmp_path, to_tensor, per_class=2, progress=False).labels.tolist() == [
        0,
        0,
        217,
        217,
    ]
    assert len(read_images(tmp_path, to_tensor, limit=4, progress=False)) == 4


def test_unreadable_files_are_skipped_with_one_warning(tmp_path: Path) -> None:
    write(tmp_path / "good.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.warns(UnreadableImagesWarning) as record:
        batch = read_images(tmp_path, to_tensor, progress=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert "2 unreadable" in message and "broken.jpg" in message and "empty.png" in message
    assert batch.names == ["good"]


def test_bad_sources_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        find_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="no image files"):
        find_images(tmp_path)
    write(tmp_path / "cats" / "a.jpg")
    with pytest.raises(ValueError, match="neither a WordNet id"):
        find_images(tmp_path)
    (tmp_path / "only_broken").mkdir()
    (tmp_path / "only_broken" / "a.jpg").write_bytes(b"xx")
    with pytest.warns(UnreadableImagesWarning), pytest.raises(ValueError, match="none of the 1"):
        read_images(tmp_path / "only_broken", to_tensor, progress=False)


def test_transform_must_give_one_size(tmp_path: Path) -> None:
    write(tmp_path / "a.jpg")
    Image.new("RGB", (20, 20)).save(tmp_path / "b.jpg")
    with pytest.raises(ValueError, match="one size"):
        read_images(tmp_path, lambda im: torch.zeros(3, im.height, im.width), progress=False)


def test_sample_photos_are_the_bundled_real_photos() -> None:
    photos = data.sample_photos()
    assert list(photos) == [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "motorcycle",
        "china",
        "flower",
    ]
    assert photos["astronaut"].size == (512, 512)
    assert photos["china"].size == (640, 427)
    assert all(p.mode == "RGB" for p in photos.values())
    with pytest.raises(ValueError, match="unknown sample photo"):
        data.sample_photos(["lena"])
