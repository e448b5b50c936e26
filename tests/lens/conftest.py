"""Fixtures of the viewer's tests: a small synthetic atlas, its export, and a server over it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spyglass.lens.server import SiteServer
from spyglass.lens.site import export_site
from tests.lens.synthetic import SyntheticAtlas


@pytest.fixture(scope="session")
def small_atlas(tmp_path_factory: pytest.TempPathFactory) -> SyntheticAtlas:
    """Two classes named "crane" (ids 0 and 1), one failed, one pending; 20 images, 5 concepts each."""
    return SyntheticAtlas(tmp_path_factory.mktemp("atlas"))


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
