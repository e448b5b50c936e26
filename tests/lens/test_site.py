"""The static export: every class and every file it refers to, the documents intact, pages small."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
import tomllib

import spyglass.lens.site as site_module
from spyglass.lens.site import (
    RECEIVER,
    STATIC_FILES,
    class_payload,
    class_script,
    export_site,
    index_entries,
    referenced_files,
    static_asset,
)
from tests.lens.synthetic import SyntheticAtlas


def received(script: str) -> tuple[str, Any, Any]:
    """(kind, key, document) of a data script ``lensReceive(kind,key,{...});``."""
    match = re.fullmatch(rf"{RECEIVER}\(\"(\w+)\",(null|\d+),(.*)\);\n", script, flags=re.S)
    assert match, script[:80]
    return match.group(1), json.loads(match.group(2)), json.loads(match.group(3))


def test_every_class_has_a_page_none_lost_to_a_name_clash(
    small_atlas: SyntheticAtlas, exported: Path
) -> None:
    site = exported.parent
    kind, key, index = received((site / "data" / "index.js").read_text())
    assert (kind, key) == ("index", None)
    assert index == small_atlas.index_document()
    assert [c["id"] for c in index["classes"] if c["short"] == "crane"] == [0, 1]
    for entry in index["classes"]:
        kind, key, payload = received((site / "data" / "class" / f"{entry['id']}.js").read_text())
        assert (kind, key) == ("class", entry["id"])
        if entry["status"] == "done":
            assert payload == small_atlas.class_document(entry["id"])
        else:  # failed and pending classes: their status record, error and provenance
            assert payload["status"] == entry["status"] and payload["error"] == entry["error"]
            assert payload["provenance"] == index["provenance"]
    assert sorted(p.name for p in (site / "data" / "class").iterdir()) == ["0.js", "1.js", "2.js", "3.js"]


def test_every_referenced_file_is_exported_byte_for_byte(small_atlas: SyntheticAtlas, exported: Path) -> None:
    site = exported.parent
    referenced = set()
    for class_id in (0, 1):
        files = referenced_files(small_atlas.class_document(class_id))
        # 5 renders, 20 crops, 15 maps, 20 images and 20 thumbnails per class
        assert len(files) == 5 + 5 * 4 + 5 * 3 + 20 + 20
        referenced.update(files)
    for relative in referenced:
        assert (site / relative).read_bytes() == (small_atlas.root / relative).read_bytes(), relative
    exported_files = {p.relative_to(site).as_posix() for p in (site / "files").rglob("*") if p.is_file()}
    assert exported_files == referenced  # nothing else of the atlas folder is copied
    for name in STATIC_FILES:
        assert (site / name).read_bytes() == static_asset(name)


def test_the_viewer_requests_nothing_outside_its_folder() -> None:
    text = "\n".join(static_asset(name).decode() for name in STATIC_FILES)
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+", text)) - {"http://www.w3.org"}  # the SVG namespace
    assert not urls
    assert "fetch(" not in text and "XMLHttpRequest" not in text and "@import" not in text


def test_export_refuses_a_folder_that_is_not_an_export(small_atlas: SyntheticAtlas, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no earlier export"):
        export_site(small_atlas, tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        export_site(small_atlas, tmp_path / "file", progress=False)


def test_export_again_into_an_export_replaces_its_data(small_atlas: SyntheticAtlas, tmp_path: Path) -> None:
    site = tmp_path / "site"
    export_site(small_atlas, site, progress=False)
    stale = site / "data" / "class" / "999.js"
    stale.write_text("old")
    page = export_site(small_atlas, site, progress=False)
    assert page == site / "index.html" and not stale.exists()


def test_export_names_a_missing_file(tmp_path: Path) -> None:
    atlas = SyntheticAtlas(tmp_path / "atlas", write_files=False)
    with pytest.raises(FileNotFoundError, match=r"class 0 refers to files/0/"):
        export_site(atlas, tmp_path / "site", progress=False)


class Tampered(SyntheticAtlas):
    """The small atlas with one class document edited by ``edit``."""

    edit: Any = None

    def class_document(self, class_id: int) -> dict[str, Any]:
        document = json.loads(json.dumps(super().class_document(class_id)))
        return self.edit(document) if class_id == 1 else document


@pytest.mark.parametrize(
    "path",
    ["files/../../../etc/passwd", "/etc/passwd", "files/1/..\\..\\x.png", "images/1.png", "files/./1.png"],
)
def test_a_file_path_outside_files_is_refused_before_anything_is_copied(tmp_path: Path, path: str) -> None:
    atlas = Tampered(tmp_path / "atlas")

    def edit(document: dict[str, Any]) -> dict[str, Any]:
        document["images"][3]["thumb"] = path
        return document

    atlas.edit = edit
    with pytest.raises(ValueError, match="must be a relative POSIX path under files/"):
        export_site(atlas, tmp_path / "site", progress=False)
    assert not (tmp_path / "site" / "data" / "class" / "1.js").exists()


def test_a_document_that_is_not_json_ready_is_refused(tmp_path: Path) -> None:
    atlas = Tampered(tmp_path / "atlas")
    atlas.edit = lambda document: {**document, "logit_mean": float("nan")}
    with pytest.raises(ValueError, match="not JSON-ready"):
        export_site(atlas, tmp_path / "site", progress=False)


def test_the_index_is_keyed_by_unique_ids() -> None:
    entry = {
        "id": 4,
        "short": "a",
        "name": "a",
        "status": "done",
        "n_images": 1,
        "n_important": 1,
        "error": None,
    }
    with pytest.raises(ValueError, match="class id 4 appears twice"):
        index_entries({"provenance": {}, "classes": [entry, dict(entry)]})
    with pytest.raises(ValueError, match="'status' must be one of"):
        index_entries({"provenance": {}, "classes": [{**entry, "status": "built"}]})
    with pytest.raises(ValueError, match="lacks 'n_important'"):
        index_entries({"provenance": {}, "classes": [{k: v for k, v in entry.items() if k != "n_important"}]})


def test_a_class_page_weighs_under_40_kb_on_1000_classes(tmp_path: Path) -> None:
    # The budget: HTML + JSON of one class page, before images, on an atlas of 1,000 classes
    # with full settings (10 concepts, 50 images, 10 crops); Lens's pages weigh 369 KB.
    atlas = SyntheticAtlas.many(
        tmp_path, 1000, n_images=50, n_concepts=10, n_crops=10, maps_per_concept=5, write_files=False
    )
    index = atlas.index_document()
    html = len(static_asset("index.html"))
    weights = []
    for entry in index_entries(index)[::50]:  # every 50th class: the documents all have one shape
        weights.append(html + len(class_script(entry["id"], class_payload(atlas, entry)).encode()))
    assert max(weights) < 40_000, max(weights)
    # The index of 1,000 classes alone is over the budget: no class page may carry it (test_browser
    # checks that a class page never loads data/index.js).
    assert len(json.dumps(index)) > 40_000


def test_every_viewer_file_ships_in_the_package() -> None:
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    static = Path(site_module.__file__).parent / "static"
    shipped = {
        p.name
        for p in static.iterdir()
        if any(fnmatch.fnmatch(f"lens/static/{p.name}", g) for g in patterns["spyglass"])
    }
    assert shipped == {p.name for p in static.iterdir()} == set(STATIC_FILES)
