"""Fixtures of the atlas tests: a synthetic atlas for the viewer (its export, a server over it),
and a small folder of real photos with an atlas of the tiny model built on it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spyglass.lens import AtlasSettings, build_atlas
from spyglass.lens.server import SiteServer
from spyglass.lens.site import export_site
from tests.conftest import SHARED_DATA
from tests.lens.synthetic import SyntheticAtlas
from tests.tiny import tiny_model

# The tiny model (32 px, 5 classes) predicts two of its classes on these photos; tiny settings.
TINY = AtlasSettings(
    max_images=10,
    n_concepts=3,
    patch_size=16,
    n_crops=3,
    n_maps=2,
    maco_steps=4,
    maco_size=16,
    maco_crops=1,
    batch_size=16,
)
FOLDERS = 4
PER_FOLDER = 10


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real photos (10 from each of 4 Imagenette classes), linked, never copied."""
    source = SHARED_DATA / "imagenette-val"
    if not source.is_dir():
        pytest.skip(f"real ImageNet photos not found at {source}")
    folder = tmp_path_factory.mktemp("photos")
    for wnid in sorted(os.listdir(source))[:FOLDERS]:
        (folder / wnid).mkdir()
        for name in sorted(os.listdir(source / wnid))[:PER_FOLDER]:
            (folder / wnid / name).symlink_to(source / wnid / name)
    return folder


@pytest.fixture(scope="session")
def tiny_atlas(photo_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The in-process atlas of the tiny model on :func:`photo_folder` (read only: tests copy it)."""
    root = tmp_path_factory.mktemp("atlas") / "tiny"
    build_atlas(tiny_model, photo_folder, root, settings=TINY, progress=False)
    return root


@pytest.fixture(scope="session")
def small_atlas(tmp_path_factory: pytest.TempPathFactory) -> SyntheticAtlas:
    """Two classes named "crane" (ids 0 and 1), one failed, one pending; 20 images, 5 concepts each."""
    return SyntheticAtlas(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def exported(small_atlas: SyntheticAtlas, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small atlas exported as a static site; the path of its index.html."""
    return export_site(small_atlas, tmp_path_factory.mktemp("export") / "site", progress=False)


@pytest.fixture(scope="session")
def served(small_atlas: SyntheticAtlas) -> Iterator[str]:
    """The small atlas served on 127.0.0.1 (a free port); its base URL."""
    with SiteServer(small_atlas, port=0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.url
        server.shutdown()
        thread.join(timeout=5)
