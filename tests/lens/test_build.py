"""The atlas builder and store: records, documents, resume after SIGKILL, Dask, refusals, failures."""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from spyglass.concepts import class_concepts
from spyglass.lens import Atlas, AtlasMismatchError, AtlasSettings, build_atlas, weights_sha256
from spyglass.lens.build import classical_mds, load_worker_model
from spyglass.models import default_layer
from tests.lens.conftest import TINY
from tests.tiny import tiny_model

ROOT = Path(__file__).resolve().parents[2]

INDEX_KEYS = {"id", "short", "name", "status", "n_images", "n_important", "error"}
PROVENANCE_KEYS = {"model", "weights_sha256", "layer", "spyglass_version", "data", "created", "settings"}
CLASS_KEYS = {
    "id", "short", "name", "provenance", "n_images", "logit_mean", "residual_share", "important_rule",
    "concepts", "similarity", "images",
}  # fmt: skip
CONCEPT_KEYS = {
    "index", "share", "important", "image_share", "render", "crops", "maps", "top_classes", "layout",
    "similar",
}  # fmt: skip
IMAGE_KEYS = {"index", "file", "thumb", "point", "dominant", "shares", "maps"}


def _json_types(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_types(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_json_types(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _floats(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return [value] if isinstance(value, float) else []


def _files(document: dict[str, Any]) -> list[str]:
    names = [image[k] for image in document["images"] for k in ("file", "thumb")]
    for concept in document["concepts"]:
        names += concept["crops"] + [m["file"] for m in concept["maps"]]
        if concept["render"] is not None:
            names.append(concept["render"])
    return names


def test_the_documents_have_the_contract_shapes(tiny_atlas: Path) -> None:
    with Atlas.open(tiny_atlas) as atlas:
        index = atlas.index_document()
        done = sorted(atlas.finished_classes())
        documents = {c: atlas.class_document(c) for c in done}
        with pytest.raises(KeyError):
            atlas.class_document(next(c for c in range(5) if c not in done))
    assert set(index) == {"provenance", "classes"}
    assert set(index["provenance"]) == PROVENANCE_KEYS
    assert index["provenance"]["model"] == "tests.tiny:tiny_model"
    assert index["provenance"]["weights_sha256"] == weights_sha256(tiny_model())
    assert index["provenance"]["settings"]["n_concepts"] == TINY.n_concepts
    assert [c["id"] for c in index["classes"]] == list(range(5))  # every class of the model
    assert all(set(c) == INDEX_KEYS for c in index["classes"])
    assert len(done) == 2  # the two classes the tiny model predicts on these photos
    for entry in index["classes"]:
        assert entry["status"] == ("done" if entry["id"] in done else "pending")
    for class_id, document in documents.items():
        assert _json_types(document) and json.loads(json.dumps(document)) == document
        assert len(json.dumps(document)) < 40_000
        assert set(document) == CLASS_KEYS and document["id"] == class_id
        assert all(set(c) == CONCEPT_KEYS for c in document["concepts"])
        assert all(set(i) == IMAGE_KEYS for i in document["images"])
        # floats carry 4 significant digits at most
        assert all(float(f"{f:.4g}") == f for f in _floats(document))
        assert index["classes"][class_id]["n_images"] == document["n_images"] == len(document["images"])
        assert document["important_rule"] == "top concept of >= 10% of the images"


def test_files_exist_under_files_and_every_image_has_a_thumbnail(tiny_atlas: Path) -> None:
    with Atlas.open(tiny_atlas) as atlas:
        documents = [atlas.class_document(c) for c in sorted(atlas.finished_classes())]
    for document in documents:
        for name in _files(document):
            assert name.startswith(f"files/{document['id']}/") and ".." not in name
            assert (tiny_atlas / name).is_file(), name
        thumbs = [image["thumb"] for image in document["images"]]
        assert len(set(thumbs)) == document["n_images"]
        for concept in document["concepts"]:
            assert len(concept["crops"]) == TINY.n_crops
            assert concept["render"] is not None and concept["render"].endswith(".png")
            for entry in concept["maps"]:  # each map is listed on its image too
                image = document["images"][entry["image"]]
                assert {"concept": concept["index"], "file": entry["file"]} in image["maps"]


def test_the_records_agree_with_the_pipeline(tiny_atlas: Path, photo_folder: Path) -> None:
    with Atlas.open(tiny_atlas) as atlas:
        class_id = min(atlas.finished_classes())
        document = atlas.class_document(class_id)
        sources = [row[0] for row in atlas.predictions() or [] if row[2] == class_id][: TINY.max_images]
    model = tiny_model()
    images = torch.stack([model.preprocess(photo_folder / s) for s in sources])
    record = class_concepts(
        model, images, class_id, n_concepts=3, patch_size=16, n_crops=3, n_maps=2, render=False,
        alignment_top_k=5, strategic=True, seed=0, batch_size=16, progress=False,
    )  # fmt: skip
    assert record.logit_share is not None and record.strategic is not None
    concepts = document["concepts"]
    assert [c["index"] for c in concepts] == list(record.ranked)  # decreasing importance
    for concept in concepts:
        k = concept["index"]
        assert concept["share"] == pytest.approx(float(record.logit_share[k]), rel=1e-3, abs=1e-4)
        assert concept["image_share"] == pytest.approx(float(record.strategic.shares[k]), abs=1e-4)
        assert concept["important"] == (k in record.strategic.important)
        assert concept["important"] == (concept["image_share"] >= TINY.min_share)
    assert document["residual_share"] == pytest.approx(1 - sum(c["share"] for c in concepts), abs=1e-3)
    assert document["logit_mean"] == pytest.approx(float(record.logits.mean()), rel=1e-3)
    for j, image in enumerate(document["images"]):
        assert image["dominant"] == int(record.strategic.dominant[j])
        assert image["shares"] == pytest.approx(record.logit_share_per_image[j].tolist(), rel=1e-3, abs=1e-4)
        assert image["point"] == pytest.approx(record.strategic.embedding[j].tolist(), rel=1e-3, abs=1e-3)
    # The within-class similarity is the concepts' cosines; 3 points in a plane: MDS is exact.
    unit = torch.nn.functional.normalize(record.concepts.double(), dim=1)
    cosine = (unit @ unit.T).numpy()
    np.testing.assert_allclose(document["similarity"], cosine, atol=1e-3)
    layout = {c["index"]: np.array(c["layout"]) for c in concepts}
    for a in range(3):
        for b in range(3):
            chord = math.sqrt(max(2 - 2 * cosine[a, b], 0.0))
            assert np.linalg.norm(layout[a] - layout[b]) == pytest.approx(chord, abs=2e-3)
    assert record.alignment is not None
    for concept in concepts:
        assert [t["id"] for t in concept["top_classes"]] == record.alignment.top_classes[
            concept["index"]
        ].tolist()


def test_similar_concepts_follow_the_recorded_rule(tiny_atlas: Path) -> None:
    with Atlas.open(tiny_atlas) as atlas:
        banks = atlas.concept_vectors()
        documents = {c: atlas.class_document(c) for c in banks}
        threshold = atlas.provenance["settings"]["similar_threshold"]
    unit = {c: b / np.linalg.norm(b, axis=1, keepdims=True) for c, b in banks.items()}
    links = 0
    for class_id, document in documents.items():
        for concept in document["concepts"]:
            others = [(c, k) for c in banks if c != class_id for k in range(len(banks[c]))]
            cosines = {(c, k): float(unit[class_id][concept["index"]] @ unit[c][k]) for c, k in others}
            expected = sorted((v, c, k) for (c, k), v in cosines.items() if v >= threshold)[::-1][:5]
            got = [(s["cosine"], s["class"], s["concept"]) for s in concept["similar"]]
            assert [(c, k) for _, c, k in got] == [(c, k) for _, c, k in expected]
            assert [v for v, _, _ in got] == pytest.approx([v for v, _, _ in expected], abs=1e-3)
            links += len(got)
    assert links > 0  # NMF concepts of one model's layer are alike: some pass 0.5


def test_a_build_with_other_settings_model_or_data_is_refused(
    tiny_atlas: Path, photo_folder: Path, tmp_path: Path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny_atlas, root)
    before = sorted(p.relative_to(root) for p in (root / "files").rglob("*"))
    with Atlas.open(root) as atlas:
        index = atlas.index_document()
    with pytest.raises(AtlasMismatchError, match="setting seed: the atlas has 0, this build 1"):
        build_atlas(tiny_model, photo_folder, root, settings=AtlasSettings(**{**TINY.as_dict(), "seed": 1}))
    with pytest.raises(AtlasMismatchError, match=r"model: the atlas has 'tests\.tiny:tiny_model'"):
        build_atlas(_other_tiny, photo_folder, root, settings=TINY)
    other_data = tmp_path / "photos"
    shutil.copytree(photo_folder, other_data, symlinks=True)
    with pytest.raises(AtlasMismatchError, match="data: the atlas has"):
        build_atlas(tiny_model, other_data, root, settings=TINY)
    assert sorted(p.relative_to(root) for p in (root / "files").rglob("*")) == before
    with Atlas.open(root) as atlas:
        assert atlas.index_document() == index


def _other_tiny() -> Any:
    model = tiny_model()
    with torch.no_grad():
        model.network[-1].bias.add_(0.1)
    return model


def test_a_resumed_build_recomputes_nothing(tiny_atlas: Path, photo_folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny_atlas, root)
    summary = build_atlas(tiny_model, photo_folder, root, settings=TINY, progress=False)
    assert summary.built == () and summary.failed == () and len(summary.skipped) == 2
    with Atlas.open(root) as atlas:
        assert all(atlas.attempts(c) == 1 for c in atlas.finished_classes())


_KILLED_BUILD = """
import sys, types
sys.path.insert(0, {src!r})
package = types.ModuleType("tests"); package.__path__ = [{tests!r}]; sys.modules["tests"] = package
from tests.lens.conftest import TINY
from tests.tiny import tiny_model
from spyglass.lens import build_atlas
build_atlas(tiny_model, {data!r}, {root!r}, classes=range(5), settings=TINY, progress=False)
"""


def _statuses(root: Path) -> dict[int, str]:
    try:
        with sqlite3.connect(f"file:{root / 'atlas.sqlite'}?mode=ro", uri=True) as db:
            return dict(db.execute("SELECT id, status FROM classes"))
    except sqlite3.Error:  # not created yet
        return {}


def test_a_build_killed_by_sigkill_resumes_with_no_class_lost_or_doubled(
    tiny_atlas: Path, photo_folder: Path, tmp_path: Path
) -> None:
    """SIGKILL while a class is in flight (its files may be half written), then the same build again.

    The child builds classes 0…4 in order: 0 fails at once (no image is predicted as it), 1 then
    computes for seconds (UMAP compiles on its first call); it is killed as soon as 0 is stored.
    """
    root = tmp_path / "killed"
    script = _KILLED_BUILD.format(
        src=str(ROOT / "src"), tests=str(ROOT / "tests"), data=str(photo_folder), root=str(root)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not _statuses(root) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    _, stderr = child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    with Atlas.open(tiny_atlas) as reference:
        expected = reference.finished_classes()
    before = _statuses(root)
    assert before == {0: "failed"}  # killed mid-way: class 1 in flight, nothing of it stored

    summary = build_atlas(tiny_model, photo_folder, root, classes=range(5), settings=TINY, progress=False)
    assert summary.skipped == () and set(summary.built) == expected
    with Atlas.open(root) as atlas, Atlas.open(tiny_atlas) as reference:
        assert atlas.finished_classes() == expected
        # the classes without images failed, with their error, and the build went on past them
        failed = atlas.failed_classes()
        assert set(failed) == set(range(5)) - expected
        assert all("predicts 0 image(s)" in error for error in failed.values())
        assert atlas.attempts(0) == 2 and all(atlas.attempts(c) == 1 for c in set(failed) - {0})
        for class_id in expected:
            mine, theirs = atlas.class_document(class_id), reference.class_document(class_id)
            assert mine["concepts"] == theirs["concepts"] and mine["images"] == theirs["images"]
    with sqlite3.connect(root / "atlas.sqlite") as db:
        for class_id in expected:
            rows = db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT image) FROM images WHERE class_id = ?", (class_id,)
            )
            assert rows.fetchone() == (TINY.max_images, TINY.max_images)
    # what the killed attempt left half written is gone: one folder per finished class
    assert sorted(p.name for p in (root / "files").iterdir()) == sorted(map(str, expected))


def _worker_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> Any:
    """Write `source` (a template with `{tiny}`) as module `name` on the workers' path, import its factory.

    Workers import a model factory by name, and cannot import the test tree (another package named
    `tests` is installed): the factory goes in a module of its own on their path.
    """
    (tmp_path / f"{name}.py").write_text(source.format(tiny=str(ROOT / "tests" / "tiny.py")))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return importlib.import_module(name).tiny_model


_WORKER_MODELS = """
import importlib.util

_spec = importlib.util.spec_from_file_location("_lens_tests_tiny", {tiny!r})
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)


def tiny_model():
    return _tiny.tiny_model()
"""


@pytest.mark.slow  # two worker processes start, and each compiles UMAP (numba) on its first call
def test_a_local_cluster_of_two_workers_builds_the_same_atlas(
    tiny_atlas: Path, photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = _worker_factory(tmp_path, monkeypatch, "lens_worker_models", _WORKER_MODELS)

    summary = build_atlas(factory, photo_folder, tmp_path / "dask", settings=TINY, workers=2, progress=False)
    with Atlas.open(tmp_path / "dask") as atlas, Atlas.open(tiny_atlas) as reference:
        assert set(summary.built) == atlas.finished_classes() == reference.finished_classes()
        assert atlas.provenance["weights_sha256"] == reference.provenance["weights_sha256"]
        assert atlas.predictions() == reference.predictions()
        for class_id in summary.built:
            mine, theirs = atlas.class_document(class_id), reference.class_document(class_id)
            assert _files(mine) == _files(theirs)
            for field in ("concepts", "images", "similarity"):
                np.testing.assert_allclose(_floats(mine[field]), _floats(theirs[field]), rtol=1e-3, atol=1e-3)
            assert [c["index"] for c in mine["concepts"]] == [c["index"] for c in theirs["concepts"]]


@pytest.mark.slow  # EfficientNet-Lite0 on 40 photos and 24 crops
def test_the_default_model_on_real_photos(photo_folder: Path, tmp_path: Path) -> None:
    settings = AtlasSettings(
        max_images=6, n_concepts=3, patch_size=112, n_crops=2, n_maps=1, maco_steps=2, maco_size=32,
        maco_crops=1, batch_size=16,
    )  # fmt: skip
    summary = build_atlas(
        "efficientnet_lite0", photo_folder, tmp_path / "lite0", classes=[0], settings=settings, progress=False
    )
    assert summary.built == (0,)
    with Atlas.open(tmp_path / "lite0") as atlas:
        index = atlas.index_document()
        document = atlas.class_document(0)
        predictions = atlas.predictions() or []
    assert index["classes"][0]["short"] == "tench" and index["classes"][0]["name"] == "tench, Tinca tinca"
    assert (
        index["classes"][134]["name"] == "crane" and index["classes"][517]["name"] == "crane"
    )  # ids, not names
    assert index["provenance"]["layer"] == default_layer(load_worker_model("efficientnet_lite0"))
    # The model predicts most of the 10 tench photos as tench; the page shows the first 6.
    tench = [row for row in predictions if row[2] == 0]
    assert len(tench) >= 6 and all(row[0].startswith("n01440764/") for row in tench)
    assert document["n_images"] == 6 and document["logit_mean"] > 0
    top = document["concepts"][0]
    assert top["share"] > 0 and top["share"] == max(c["share"] for c in document["concepts"])
    # The concept carrying most of the tench logit lies along the tench classifier weights.
    assert 0 in [entry["id"] for entry in top["top_classes"]]
    assert all(len(c["top_classes"]) == 5 for c in document["concepts"])


def test_classical_mds_recovers_planar_distances() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    layout = classical_mds(cosine)
    chords = np.sqrt(np.clip(2 - 2 * cosine, 0, None))
    np.testing.assert_allclose(np.linalg.norm(layout[:, None] - layout[None], axis=-1), chords, atol=1e-6)
    np.testing.assert_array_equal(classical_mds(cosine), layout)


def test_one_build_at_a_time(tiny_atlas: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tiny_atlas, root)
    refused = pytest.raises(ValueError, match="another build is writing into")
    with (
        Atlas.open(root) as first,
        Atlas.open(root) as second,
        first.writer_lock(),
        refused,
        second.writer_lock(),
    ):
        pass
    with Atlas.open(root) as atlas, atlas.writer_lock():  # released when the first build ends
        pass


def test_bad_arguments_fail_before_any_work(photo_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "atlas"
    with pytest.raises(ValueError, match="not both"):
        build_atlas(tiny_model, photo_folder, out, workers=2, scheduler="tcp://localhost:8786")
    with pytest.raises(TypeError, match="needs a model spec the workers can load"):
        build_atlas(tiny_model(), photo_folder, out, workers=2)
    with pytest.raises(ValueError, match="no such folder"):
        build_atlas(tiny_model, tmp_path / "nope", out)
    with pytest.raises(ValueError, match=r"class id must be .*4"):
        build_atlas(tiny_model, photo_folder, out, classes=[5], settings=TINY)
    with pytest.raises(TypeError, match="top-level function"):
        build_atlas(lambda: tiny_model(), photo_folder, out)
    with pytest.raises(ValueError, match="min_images"):
        AtlasSettings(min_images=2)
    assert not out.exists()


def test_an_atlas_killed_while_being_created_is_created_again(tmp_path: Path) -> None:
    from spyglass.lens import ModelInfo

    info = ModelInfo("tiny", None, "4", ("a", "b"), ("a", "b"))
    root = tmp_path / "atlas"
    root.mkdir()
    (root / "atlas.sqlite").write_bytes(b"")  # the empty file a killed creation leaves
    with Atlas.open_or_create(root, info, {"seed": 0}, data="photos") as atlas:
        assert [c["status"] for c in atlas.index_document()["classes"]] == ["pending", "pending"]
    (root / "atlas.sqlite").unlink()
    (root / "atlas.sqlite").write_bytes(b"not a database, and not ours to delete" * 100)
    with pytest.raises(ValueError, match="cannot be read as an atlas"):
        Atlas.open_or_create(root, info, {"seed": 0}, data="photos")


_KILLING_MODELS = """
import os
import signal
import traceback

import importlib.util

_spec = importlib.util.spec_from_file_location("_lens_tests_tiny", {tiny!r})
_tiny = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiny)
MARKER = {marker!r}


def _die_once(module, inputs):
    # Only inside a class job (not the folder's predictions, not the client), and only once in
    # all processes: the first to create the marker kills its own worker process mid-class.
    if any(frame.name == "_class_job" for frame in traceback.extract_stack()):
        try:
            os.close(os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return None
        os.kill(os.getpid(), signal.SIGKILL)
    return None


def tiny_model():
    model = _tiny.tiny_model()
    model.network.register_forward_pre_hook(_die_once)
    return model
"""


@pytest.mark.slow  # two worker processes start, one is killed and restarted, UMAP compiles (numba)
def test_a_worker_killed_mid_class_gets_the_class_retried_elsewhere(
    tiny_atlas: Path, photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGKILL of the worker process running a class: the scheduler reruns the class, and the
    atlas ends with every class stored once, as the in-process build stores it, and no failure."""
    marker = tmp_path / "killed-once"
    source = _KILLING_MODELS.replace("{marker!r}", repr(str(marker)))
    factory = _worker_factory(tmp_path, monkeypatch, "lens_killing_models", source)

    root = tmp_path / "dask"
    summary = build_atlas(factory, photo_folder, root, settings=TINY, workers=2, progress=False)
    assert marker.exists()  # a worker did die in a class job
    with Atlas.open(root) as atlas, Atlas.open(tiny_atlas) as reference:
        expected = reference.finished_classes()
        assert summary.failed == () and atlas.failed_classes() == {}
        assert set(summary.built) == atlas.finished_classes() == expected
        assert all(atlas.attempts(c) == 1 for c in expected)
        for class_id in expected:
            mine, theirs = atlas.class_document(class_id), reference.class_document(class_id)
            assert _files(mine) == _files(theirs)
            np.testing.assert_allclose(
                _floats(mine["concepts"]), _floats(theirs["concepts"]), rtol=1e-3, atol=1e-3
            )
    with sqlite3.connect(root / "atlas.sqlite") as db:
        for class_id in expected:
            rows = db.execute("SELECT COUNT(*) FROM images WHERE class_id = ?", (class_id,))
            assert rows.fetchone() == (TINY.max_images,)
    assert sorted(p.name for p in (root / "files").iterdir()) == sorted(map(str, expected))
