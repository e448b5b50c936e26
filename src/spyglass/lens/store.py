"""The atlas store: SQLite records beside image files, safe to kill and resume.

An atlas (Lens, in T. Fel's thesis "Sparks of Explainability" and CRAFT, CVPR 2023) is a
folder::

    ATLAS/atlas.sqlite     the records: provenance, settings, predictions, classes, concepts,
                           per-image importances and points, concept maps, links
    ATLAS/files/<id>/...   the class's images: photos, thumbnails, crops, map overlays, renders

Why SQLite and files. The store must be embedded (nothing for the user to set up), have one
writer and many readers (the viewer reads while a build writes: SQLite's write-ahead log),
and make "a class is either entirely there or not at all" cheap: a class's files are
written first, then its records in **one transaction**, so a build killed at any moment
(``kill -9``) loses at most the classes in flight, and a rerun finds every finished class
by its ``done`` row. Images stay plain files, so the viewer and any static host serve them
as they are; only small numbers and paths go into the database.

The two *documents*, :meth:`Atlas.index_document` and :meth:`Atlas.class_document`, are what
the viewer reads: plain JSON-ready dicts computed from the records, with floats rounded to
4 significant digits and every file path relative to :attr:`Atlas.root`, under ``files/``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import shutil
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from spyglass.training.checkpoint import sync_folder

__all__ = ["DATABASE", "FILES", "Atlas", "AtlasMismatchError", "ClassRecord", "ModelInfo"]

DATABASE = "atlas.sqlite"
FILES = "files"
_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    position INTEGER PRIMARY KEY, path TEXT NOT NULL, label INTEGER NOT NULL, predicted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS classes (
    id INTEGER PRIMARY KEY, status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    n_images INTEGER NOT NULL, n_important INTEGER NOT NULL, logit_mean REAL, residual_share REAL,
    similarity TEXT, error TEXT, seconds REAL, finished TEXT NOT NULL, attempts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS concepts (
    class_id INTEGER NOT NULL, concept INTEGER NOT NULL, rank INTEGER NOT NULL,
    importance REAL NOT NULL, share REAL NOT NULL, important INTEGER NOT NULL, image_share REAL NOT NULL,
    render TEXT, crops TEXT NOT NULL, top_classes TEXT NOT NULL, layout_x REAL NOT NULL,
    layout_y REAL NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (class_id, concept)
);
CREATE TABLE IF NOT EXISTS images (
    class_id INTEGER NOT NULL, image INTEGER NOT NULL, source TEXT NOT NULL, file TEXT NOT NULL,
    thumb TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, dominant INTEGER NOT NULL,
    shares TEXT NOT NULL, PRIMARY KEY (class_id, image)
);
CREATE TABLE IF NOT EXISTS maps (
    class_id INTEGER NOT NULL, concept INTEGER NOT NULL, image INTEGER NOT NULL, file TEXT NOT NULL,
    PRIMARY KEY (class_id, concept, image)
);
CREATE TABLE IF NOT EXISTS links (
    class_id INTEGER NOT NULL, concept INTEGER NOT NULL, rank INTEGER NOT NULL,
    other_class INTEGER NOT NULL, other_concept INTEGER NOT NULL, cosine REAL NOT NULL,
    PRIMARY KEY (class_id, concept, rank)
);
"""
_CLASS_TABLES = ("concepts", "images", "maps", "links")


class AtlasMismatchError(ValueError):
    """A build into an existing atlas with another model, layer, data folder or settings."""


def _round(value: float) -> float:
    """``value`` to 4 significant digits (the documents' precision)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"an atlas record holds a non-finite number ({value})")
    return float(f"{value:.4g}")


def _rounded(values: Sequence[float]) -> list[float]:
    return [_round(v) for v in values]


@dataclass(frozen=True)
class ModelInfo:
    """What identifies the model of an atlas (checked on every build into it).

    Attributes
    ----------
    name
        The model spec the workers load (a :func:`spyglass.models.load` name or file), or a
        label for a model given as an object.
    weights_sha256
        SHA-256 of the state dict's tensors (names, dtypes, shapes and bytes, in name order),
        or ``None`` when not computed.
    layer
        The layer the concepts are extracted at.
    class_names
        Short name of each class, by class id.
    full_names
        Long name of each class (WordNet lemmas for ImageNet), by class id.
    """

    name: str
    weights_sha256: str | None
    layer: str
    class_names: tuple[str, ...]
    full_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.full_names) or not self.class_names:
            raise ValueError(
                f"ModelInfo needs one short and one full name per class; got {len(self.class_names)} "
                f"short and {len(self.full_names)} full names"
            )

    def identity(self) -> dict[str, Any]:
        """The fields two builds must agree on."""
        return {
            "model": self.name,
            "weights_sha256": self.weights_sha256,
            "layer": self.layer,
            "n_classes": len(self.class_names),
        }


@dataclass
class ClassRecord:
    """Everything the store keeps of one finished class (built by :mod:`spyglass.lens.build`).

    File fields are paths relative to the atlas root, under ``files/<class_id>/``; ``files``
    maps each such path to its encoded bytes (written by :meth:`Atlas.write_class`).
    Concept arrays are in concept-index order, image arrays in image order.
    """

    class_id: int
    logit_mean: float
    importance: np.ndarray  # (r,) mean Gradient×Input per concept
    shares: np.ndarray  # (r,) share of the logit per concept
    ranked: list[int]  # concept indices by decreasing importance
    important: list[int]  # the rule's important concepts
    image_shares: np.ndarray  # (r,) share of the images each concept dominates
    vectors: np.ndarray  # (r, p) the concept bank
    top_classes: list[list[tuple[int, float]]]  # per concept: (class id, cosine), most aligned first
    layout: np.ndarray  # (r, 2) within-class similarity layout
    similarity: np.ndarray  # (r, r) cosines between the concepts
    renders: list[str | None]  # per concept
    crops: list[list[str]]  # per concept, best first
    concept_maps: list[list[tuple[int, str]]]  # per concept: (image, overlay file)
    sources: list[str]  # per image: the photo's path in the data folder
    image_files: list[str]
    thumbs: list[str]
    points: np.ndarray  # (N, 2) strategic graph
    dominant: np.ndarray  # (N,)
    image_logit_shares: np.ndarray  # (N, r)
    seconds: float
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def n_images(self) -> int:
        return len(self.sources)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class Atlas:
    """An atlas on disk: SQLite records (``atlas.sqlite``) and image files (``files/``).

    Open an existing one with :meth:`open`, make one with :meth:`create` (or
    :meth:`open_or_create`, which a build uses: it refuses an atlas of another model,
    layer, data folder or settings). :func:`spyglass.lens.build_atlas` fills it; the
    viewer reads :meth:`index_document` and :meth:`class_document`.

    Examples
    --------
    >>> import tempfile
    >>> from spyglass.lens.store import Atlas, ModelInfo
    >>> info = ModelInfo("tiny", None, "4", ("cat", "dog"), ("cat, Felis", "dog, Canis"))
    >>> atlas = Atlas.create(tempfile.mkdtemp() + "/atlas", info, {"n_concepts": 3}, data="photos/")
    >>> [c["status"] for c in atlas.index_document()["classes"]]
    ['pending', 'pending']
    >>> atlas.record_failure(1, "too few images")
    >>> atlas.failed_classes()
    {1: 'too few images'}
    """

    def __init__(self, root: Path, connection: sqlite3.Connection) -> None:
        self.root = root
        self._db = connection
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        if "provenance" not in meta or json.loads(meta.get("format", "0")) != _FORMAT:
            raise ValueError(f"{root} is not a spyglass atlas of format {_FORMAT} (no provenance record)")
        self._provenance: dict[str, Any] = json.loads(meta["provenance"])
        self._short: list[str] = json.loads(meta["class_names"])
        self._full: list[str] = json.loads(meta["full_names"])

    # ----------------------------------------------------------------- opening

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        connection = sqlite3.connect(path, isolation_level=None)  # transactions opened by hand
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Atlas:
        """Open the atlas in folder ``root``.

        Raises
        ------
        ValueError
            If ``root`` holds no atlas.
        """
        path = Path(root)
        if not (path / DATABASE).is_file():
            raise ValueError(
                f"{path} is not an atlas: it has no {DATABASE} (build one with `spyglass lens build`)"
            )
        try:
            return cls(path, cls._connect(path / DATABASE))
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{path / DATABASE} cannot be read as an atlas ({error})") from None

    @classmethod
    def create(
        cls,
        root: str | os.PathLike[str],
        model_info: ModelInfo,
        settings: Mapping[str, Any],
        *,
        data: str,
        rules: Mapping[str, Any] | None = None,
    ) -> Atlas:
        """Make a new, empty atlas in ``root`` (created; must not hold an atlas yet).

        Parameters
        ----------
        root
            The atlas folder.
        model_info
            The model's identity and class names.
        settings
            The build settings (JSON-ready values).
        data
            The image folder the atlas is built from (as given to the build, resolved).
        rules
            Rules recorded in the provenance beside the settings (e.g. the important-concept
            rule and the similar-concept rule and threshold).
        """
        if not isinstance(model_info, ModelInfo):
            raise TypeError(f"model_info must be a ModelInfo; got {type(model_info).__name__}")
        path = Path(root)
        if path.exists() and not path.is_dir():
            raise ValueError(f"atlas folder {path} is a file; give a folder's path")
        if (path / DATABASE).exists():
            raise ValueError(f"{path} already holds an atlas; open it with Atlas.open")
        path.mkdir(parents=True, exist_ok=True)
        (path / FILES).mkdir(exist_ok=True)
        from spyglass import __version__

        provenance = {
            **model_info.identity(),
            "spyglass_version": __version__,
            "data": str(data),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "settings": dict(settings),
            "rules": dict(rules or {}),
        }
        connection = cls._connect(path / DATABASE)
        # Schema and provenance in one transaction: a build killed here leaves no half-made atlas.
        with _transaction(connection):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", _json(_FORMAT)),
                    ("provenance", _json(provenance)),
                    ("class_names", _json(list(model_info.class_names))),
                    ("full_names", _json(list(model_info.full_names))),
                ],
            )
        return cls(path, connection)

    @classmethod
    def open_or_create(
        cls,
        root: str | os.PathLike[str],
        model_info: ModelInfo,
        settings: Mapping[str, Any],
        *,
        data: str,
        rules: Mapping[str, Any] | None = None,
    ) -> Atlas:
        """The atlas in ``root`` if it was built the same way, else a new one there.

        Raises
        ------
        AtlasMismatchError
            If ``root`` holds an atlas of another model, weights, layer, data folder or settings:
            results of two builds are never mixed.
        """
        path = Path(root)
        if (path / DATABASE).exists() and _holds_no_table(path / DATABASE):
            # What a build killed while creating the atlas leaves (the creation is one transaction).
            for suffix in ("", "-wal", "-shm"):
                (path / f"{DATABASE}{suffix}").unlink(missing_ok=True)
        if not (path / DATABASE).exists():
            return cls.create(path, model_info, settings, data=data, rules=rules)
        atlas = cls.open(path)
        atlas.check_compatible(model_info, settings, data=data)
        return atlas

    def check_compatible(self, model_info: ModelInfo, settings: Mapping[str, Any], *, data: str) -> None:
        """Raise :class:`AtlasMismatchError` unless a build with these inputs may add to this atlas."""
        mine = self._provenance
        wanted = {**model_info.identity(), "data": str(data)}
        differences = [
            f"{key}: the atlas has {mine.get(key)!r}, this build {value!r}"
            for key, value in wanted.items()
            if mine.get(key) != value
        ]
        recorded = mine["settings"]
        given = json.loads(_json(dict(settings)))  # the same JSON round trip as the stored copy
        differences += [
            f"setting {key}: the atlas has {recorded.get(key)!r}, this build {given.get(key)!r}"
            for key in sorted(set(recorded) | set(given))
            if recorded.get(key) != given.get(key)
        ]
        if differences:
            raise AtlasMismatchError(
                f"atlas {self.root} was built differently, and results are never mixed: "
                + "; ".join(differences)
                + ". Build into another folder, or delete this one to rebuild it."
            )

    def close(self) -> None:
        """Close the database (the object is unusable afterwards)."""
        self._db.close()

    def __enter__(self) -> Atlas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the atlas's writer lock (one build at a time); released even on ``kill -9``.

        Raises
        ------
        ValueError
            If another process is building into this atlas.
        """
        handle: IO[str] = open(self.root / "build.lock", "w")  # noqa: SIM115 - held for the block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"another build is writing into {self.root}; wait for it to end") from None
            yield
        finally:
            handle.close()

    # ----------------------------------------------------------------- reading state

    @property
    def provenance(self) -> dict[str, Any]:
        """Model, weights' hash, layer, spyglass version, data folder, date, settings, rules."""
        return json.loads(_json(self._provenance))

    @property
    def n_classes(self) -> int:
        return len(self._short)

    @property
    def class_names(self) -> list[str]:
        return list(self._short)

    def finished_classes(self) -> set[int]:
        """Ids of the classes whose records are complete."""
        return {row[0] for row in self._db.execute("SELECT id FROM classes WHERE status = 'done'")}

    def failed_classes(self) -> dict[int, str]:
        """``{class id: error message}`` of the classes whose last attempt failed."""
        return dict(self._db.execute("SELECT id, error FROM classes WHERE status = 'failed' ORDER BY id"))

    def attempts(self, class_id: int) -> int:
        """How many times ``class_id`` was stored (done or failed); 0 if never."""
        row = self._db.execute("SELECT attempts FROM classes WHERE id = ?", (class_id,)).fetchone()
        return int(row[0]) if row else 0

    def predictions(self) -> list[tuple[str, int, int]] | None:
        """``(path, label, predicted class)`` of every image of the data folder, or ``None`` if not stored."""
        rows = self._db.execute("SELECT path, label, predicted FROM predictions ORDER BY position").fetchall()
        return [(str(p), int(lab), int(c)) for p, lab, c in rows] or None

    def concept_vectors(self) -> dict[int, np.ndarray]:
        """``{class id: (r, p) concept bank}`` of every finished class."""
        banks: dict[int, list[np.ndarray]] = {}
        rows = self._db.execute(
            "SELECT c.class_id, c.vector FROM concepts c JOIN classes k ON k.id = c.class_id "
            "WHERE k.status = 'done' ORDER BY c.class_id, c.concept"
        )
        for class_id, blob in rows:
            banks.setdefault(int(class_id), []).append(np.frombuffer(blob, dtype=np.float32))
        return {key: np.stack(value) for key, value in banks.items()}

    # ----------------------------------------------------------------- writing

    def store_predictions(self, rows: Sequence[tuple[str, int, int]]) -> None:
        """Record the model's prediction on every image of the data folder (once per atlas)."""
        with _transaction(self._db):
            self._db.execute("DELETE FROM predictions")
            self._db.executemany(
                "INSERT INTO predictions (position, path, label, predicted) VALUES (?, ?, ?, ?)",
                [(i, str(p), int(lab), int(c)) for i, (p, lab, c) in enumerate(rows)],
            )

    def _class_folder(self, class_id: int) -> Path:
        return self.root / FILES / str(class_id)

    def write_class(self, record: ClassRecord) -> None:
        """Store a finished class: its files first, then all its records in one transaction.

        The files go to a temporary folder renamed into ``files/<class_id>/`` (replacing what a
        killed earlier attempt left), so the records never point at a partly written folder.
        """
        self._check_class(record.class_id)
        folder = self._class_folder(record.class_id)
        prefix = f"{FILES}/{record.class_id}/"
        staging = self.root / FILES / f".{record.class_id}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name, content in record.files.items():
            if not name.startswith(prefix) or ".." in name.split("/"):
                raise ValueError(f"class {record.class_id}'s file {name!r} is not under {prefix}")
            target = staging / name[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
        sync_folder(folder.parent)  # the rename durable before the records that point into it
        n_concepts = len(record.shares)
        rank_of = {concept: rank for rank, concept in enumerate(record.ranked)}
        important = set(record.important)
        cid = record.class_id
        with _transaction(self._db):
            self._delete_class(cid)
            self._db.executemany(
                "INSERT INTO concepts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        cid,
                        k,
                        rank_of[k],
                        float(record.importance[k]),
                        float(record.shares[k]),
                        int(k in important),
                        float(record.image_shares[k]),
                        record.renders[k],
                        _json(record.crops[k]),
                        _json([[int(c), float(v)] for c, v in record.top_classes[k]]),
                        float(record.layout[k, 0]),
                        float(record.layout[k, 1]),
                        np.ascontiguousarray(record.vectors[k], dtype=np.float32).tobytes(),
                    )
                    for k in range(n_concepts)
                ],
            )
            self._db.executemany(
                "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        cid,
                        j,
                        record.sources[j],
                        record.image_files[j],
                        record.thumbs[j],
                        float(record.points[j, 0]),
                        float(record.points[j, 1]),
                        int(record.dominant[j]),
                        _json([float(v) for v in record.image_logit_shares[j]]),
                    )
                    for j in range(record.n_images)
                ],
            )
            self._db.executemany(
                "INSERT INTO maps VALUES (?, ?, ?, ?)",
                [(cid, k, int(j), name) for k in range(n_concepts) for j, name in record.concept_maps[k]],
            )
            self._upsert_class(
                cid,
                "done",
                n_images=record.n_images,
                n_important=len(important),
                logit_mean=float(record.logit_mean),
                residual_share=1.0 - float(np.sum(record.shares)),
                similarity=_json([[float(v) for v in row] for row in record.similarity]),
                error=None,
                seconds=float(record.seconds),
            )

    def record_failure(self, class_id: int, error: str, seconds: float = 0.0) -> None:
        """Record that ``class_id`` failed with ``error``; a later build retries it."""
        self._check_class(class_id)
        with _transaction(self._db):
            self._delete_class(class_id)
            self._upsert_class(
                class_id, "failed", n_images=0, n_important=0, logit_mean=None, residual_share=None,
                similarity=None, error=str(error) or "failed", seconds=float(seconds),
            )  # fmt: skip
        shutil.rmtree(self._class_folder(class_id), ignore_errors=True)

    def store_links(self, links: Mapping[tuple[int, int], Sequence[tuple[int, int, float]]]) -> None:
        """Replace every concept's similar concepts in other classes (one transaction).

        ``links[(class, concept)]`` is ``[(other class, other concept, cosine), …]``, most similar first.
        """
        with _transaction(self._db):
            self._db.execute("DELETE FROM links")
            self._db.executemany(
                "INSERT INTO links VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (cid, k, rank, int(oc), int(ok), float(cos))
                    for (cid, k), rows in links.items()
                    for rank, (oc, ok, cos) in enumerate(rows)
                ],
            )

    def _check_class(self, class_id: int) -> None:
        if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
            raise TypeError(f"class_id must be an int; got {type(class_id).__name__}")
        if not 0 <= int(class_id) < self.n_classes:
            raise ValueError(f"class_id must be in [0, {self.n_classes - 1}]; got {class_id}")

    def _delete_class(self, class_id: int) -> None:
        for table in _CLASS_TABLES:
            self._db.execute(f"DELETE FROM {table} WHERE class_id = ?", (class_id,))
        self._db.execute("DELETE FROM links WHERE other_class = ?", (class_id,))

    def _upsert_class(self, class_id: int, status: str, **values: Any) -> None:
        attempts = self.attempts(class_id) + 1
        self._db.execute(
            "INSERT OR REPLACE INTO classes (id, status, n_images, n_important, logit_mean, residual_share, "
            "similarity, error, seconds, finished, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                class_id,
                status,
                values["n_images"],
                values["n_important"],
                values["logit_mean"],
                values["residual_share"],
                values["similarity"],
                values["error"],
                values["seconds"],
                dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                attempts,
            ),
        )

    # ----------------------------------------------------------------- documents

    def _document_provenance(self) -> dict[str, Any]:
        p = self._provenance
        settings = dict(p["settings"])
        settings.update(p.get("rules", {}))
        return {
            "model": p["model"],
            "weights_sha256": p["weights_sha256"],
            "layer": p["layer"],
            "spyglass_version": p["spyglass_version"],
            "data": p["data"],
            "created": p["created"],
            "settings": json.loads(_json(settings)),
        }

    def index_document(self) -> dict[str, Any]:
        """Every class of the model, with its status: what the viewer's index page reads.

        Returns
        -------
        dict
            ``{"provenance": {...}, "classes": [{"id", "short", "name", "status", "n_images",
            "n_important", "error"}, ...]}``, one entry per class of the model, sorted by id;
            ``status`` is ``"done"``, ``"failed"`` or ``"pending"`` (not built yet).
        """
        rows = {
            int(r[0]): r
            for r in self._db.execute("SELECT id, status, n_images, n_important, error FROM classes")
        }
        classes = []
        for class_id, (short, name) in enumerate(zip(self._short, self._full, strict=True)):
            row = rows.get(class_id)
            status = row[1] if row else "pending"
            done = status == "done"
            classes.append(
                {
                    "id": class_id,
                    "short": short,
                    "name": name,
                    "status": status,
                    "n_images": int(row[2]) if done and row else 0,
                    "n_important": int(row[3]) if done and row else 0,
                    "error": row[4] if row and status == "failed" else None,
                }
            )
        return {"provenance": self._document_provenance(), "classes": classes}

    def class_document(self, class_id: int) -> dict[str, Any]:
        """One finished class, as the viewer's class page reads it (a few KB).

        Raises
        ------
        KeyError
            If ``class_id`` is not a finished class of the atlas.
        """
        if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
            raise KeyError(class_id)
        class_id = int(class_id)
        row = self._db.execute(
            "SELECT n_images, logit_mean, residual_share, similarity FROM classes "
            "WHERE id = ? AND status = 'done'",
            (class_id,),
        ).fetchone()
        if row is None:
            raise KeyError(class_id)
        n_images, logit_mean, residual_share, similarity = row
        maps_by_concept: dict[int, list[dict[str, Any]]] = {}
        maps_by_image: dict[int, list[dict[str, Any]]] = {}
        for concept, image, name in self._db.execute(
            "SELECT concept, image, file FROM maps WHERE class_id = ? ORDER BY rowid", (class_id,)
        ):
            maps_by_concept.setdefault(concept, []).append({"image": image, "file": name})
            maps_by_image.setdefault(image, []).append({"concept": concept, "file": name})
        similar: dict[int, list[dict[str, Any]]] = {}
        for concept, other_class, other_concept, cosine in self._db.execute(
            "SELECT concept, other_class, other_concept, cosine FROM links WHERE class_id = ? "
            "ORDER BY concept, rank",
            (class_id,),
        ):
            similar.setdefault(concept, []).append(
                {
                    "class": other_class,
                    "short": self._short[other_class],
                    "concept": other_concept,
                    "cosine": _round(cosine),
                }
            )
        concepts = []
        for concept, share, important, image_share, render, crops, top, lx, ly in self._db.execute(
            "SELECT concept, share, important, image_share, render, crops, top_classes, layout_x, layout_y "
            "FROM concepts WHERE class_id = ? ORDER BY rank",
            (class_id,),
        ):
            concepts.append(
                {
                    "index": concept,
                    "share": _round(share),
                    "important": bool(important),
                    "image_share": _round(image_share),
                    "render": render,
                    "crops": json.loads(crops),
                    "maps": maps_by_concept.get(concept, []),
                    "top_classes": [
                        {"id": c, "short": self._short[c], "cosine": _round(v)} for c, v in json.loads(top)
                    ],
                    "layout": [_round(lx), _round(ly)],
                    "similar": similar.get(concept, []),
                }
            )
        images = [
            {
                "index": image,
                "file": name,
                "thumb": thumb,
                "point": [_round(x), _round(y)],
                "dominant": dominant,
                "shares": _rounded(json.loads(shares)),
                "maps": maps_by_image.get(image, []),
            }
            for image, name, thumb, x, y, dominant, shares in self._db.execute(
                "SELECT image, file, thumb, x, y, dominant, shares FROM images "
                "WHERE class_id = ? ORDER BY image",
                (class_id,),
            )
        ]
        rules = self._provenance.get("rules", {})
        return {
            "id": class_id,
            "short": self._short[class_id],
            "name": self._full[class_id],
            "provenance": self._document_provenance(),
            "n_images": int(n_images),
            "logit_mean": _round(logit_mean),
            "residual_share": _round(residual_share),
            "important_rule": str(rules.get("important_rule", "")),
            "concepts": concepts,
            "similarity": [_rounded(r) for r in json.loads(similarity)],
            "images": images,
        }


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _holds_no_table(path: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(path)) as connection:
            return connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    except sqlite3.DatabaseError:  # not a database at all: not ours to delete
        return False
