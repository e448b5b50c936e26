"""The two halves together: a real atlas (the tiny model's, built by the builder) exported and served."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

from spyglass.lens import Atlas, SiteServer, export_site
from spyglass.lens.site import referenced_files
from tests.lens.test_site import received


def test_a_built_atlas_exports_with_every_page_and_file(tiny_atlas: Path, tmp_path: Path) -> None:
    with Atlas.open(tiny_atlas) as atlas:
        index_html = export_site(atlas, tmp_path / "site", progress=False)
        index = atlas.index_document()
        done = [entry["id"] for entry in index["classes"] if entry["status"] == "done"]
        documents = {class_id: atlas.class_document(class_id) for class_id in done}
    site = index_html.parent
    assert done, "the tiny atlas has built classes"
    assert received((site / "data" / "index.js").read_text())[2] == index
    for class_id, document in documents.items():
        assert received((site / "data" / "class" / f"{class_id}.js").read_text())[2] == document
        files = referenced_files(document)
        assert files, class_id
        for name in files:
            assert (site / name).read_bytes() == (tiny_atlas / name).read_bytes(), name


def test_a_built_atlas_is_served_from_a_function_that_opens_it(tiny_atlas: Path) -> None:
    with Atlas.open(tiny_atlas) as atlas:
        index = atlas.index_document()
    class_id = next(entry["id"] for entry in index["classes"] if entry["status"] == "done")
    with SiteServer(lambda: Atlas.open(tiny_atlas), port=0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            with urllib.request.urlopen(f"{server.url}data/class/{class_id}.js", timeout=30) as reply:
                kind, key, document = received(reply.read().decode())
            thumb = document["images"][0]["thumb"]
            with urllib.request.urlopen(f"{server.url}{thumb}", timeout=30) as reply:
                assert reply.read() == (tiny_atlas / thumb).read_bytes()
        finally:
            server.shutdown()
            thread.join(timeout=5)
    assert (kind, key) == ("class", class_id)
