"""The atlas's web viewer as a static site: HTML, JS and CSS shipped with the package, data as scripts.

The viewer renders a *document source*: any object with a ``root`` folder and the two document
methods of the atlas contract, ``index_document()`` (every class of the model, keyed by id) and
``class_document(id)`` (one finished class: its concepts, their importance, images and links).
:class:`spyglass.lens.store.Atlas` is one; the tests use a synthetic one.

The data reach the page as small scripts, ``data/index.js`` and ``data/class/<id>.js``, each of
which hands its document to the page's global receiver (``lensReceive(kind, id, document)``)
instead of being fetched as JSON: a browser refuses ``fetch()`` of ``file://`` URLs, while it runs
``<script>`` files from there, so one site works exported to a folder and served
(:mod:`spyglass.lens.server`). A class page loads only its own script (the index of 1,000 classes
is loaded once, by the index page and the search box, never repeated per class) and its images
lazily, which keeps it far below Lens's 369 KB per class page.

Every file path in a document is relative to the source's root and lies under ``root/files/``;
:func:`check_file_path` refuses anything else (an absolute path, ``..``, a backslash), so neither
the export nor the server can be led out of the atlas by a document.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

from spyglass.progress import progress_bar

__all__ = [
    "RECEIVER",
    "STATIC_FILES",
    "DocumentSource",
    "check_file_path",
    "class_payload",
    "class_script",
    "export_site",
    "index_entries",
    "index_script",
    "referenced_files",
    "static_asset",
]

STATIC_FILES = ("index.html", "app.js", "style.css", "favicon.svg")
RECEIVER = "lensReceive"
STATUSES = ("done", "failed", "pending")
# Written into an export so that exporting again into the same folder may replace its data.
EXPORT_MARKER = ".spyglass-lens-site"


@runtime_checkable
class DocumentSource(Protocol):
    """What the viewer reads: a root folder and the atlas contract's two documents."""

    @property
    def root(self) -> Path: ...

    def index_document(self) -> dict[str, Any]: ...

    def class_document(self, class_id: int) -> dict[str, Any]: ...


def static_asset(name: str) -> bytes:
    """The bytes of one of the viewer's shipped files (:data:`STATIC_FILES`).

    Examples
    --------
    >>> b"app.js" in static_asset("index.html")
    True
    >>> static_asset("secret.txt")
    Traceback (most recent call last):
    ...
    ValueError: no viewer asset 'secret.txt'; expected one of index.html, app.js, style.css, favicon.svg
    """
    if name not in STATIC_FILES:
        raise ValueError(f"no viewer asset {name!r}; expected one of {', '.join(STATIC_FILES)}")
    return resources.files("spyglass.lens").joinpath("static", name).read_bytes()


def check_file_path(path: object, where: str) -> str:
    """``path`` if it is a document's file path: POSIX, relative, under ``files/``, no ``..``.

    Examples
    --------
    >>> check_file_path("files/3/render-0.png", "class 3")
    'files/3/render-0.png'
    >>> check_file_path("files/../../etc/passwd", "class 3")
    Traceback (most recent call last):
    ...
    ValueError: class 3: file path 'files/../../etc/passwd' must be a relative POSIX path under files/ ...
    """
    if isinstance(path, str) and path and "\\" in path:
        ok = False
    elif isinstance(path, str) and path and "\x00" not in path:
        parts = PurePosixPath(path).parts
        ok = (
            not path.startswith("/")
            and len(parts) >= 2
            and parts[0] == "files"
            and all(part not in ("..", ".", "") for part in path.split("/"))
        )
    else:
        ok = False
    if not ok:
        raise ValueError(
            f"{where}: file path {path!r} must be a relative POSIX path under files/ "
            "(e.g. 'files/3/render-0.png'), without '..', '.' or backslashes"
        )
    return str(path)


def _require(document: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [key for key in keys if key not in document]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(map(repr, missing))}; got keys {sorted(document)}")


def index_entries(document: object) -> list[dict[str, Any]]:
    """The class entries of an index document, checked: ids unique integers, known statuses.

    Examples
    --------
    >>> doc = {"provenance": {}, "classes": [
    ...     {"id": 0, "short": "crane", "name": "crane (bird)", "status": "done",
    ...      "n_images": 4, "n_important": 2, "error": None}]}
    >>> [entry["short"] for entry in index_entries(doc)]
    ['crane']
    """
    if not isinstance(document, Mapping):
        raise TypeError(f"the index document must be a dict; got {type(document).__name__}")
    _require(document, ("provenance", "classes"), "the index document")
    classes = document["classes"]
    if not isinstance(classes, list):
        raise TypeError(f"the index document's 'classes' must be a list; got {type(classes).__name__}")
    seen: set[int] = set()
    for position, entry in enumerate(classes):
        where = f"class entry {position} of the index document"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where} must be a dict; got {type(entry).__name__}")
        _require(entry, ("id", "short", "name", "status", "n_images", "n_important", "error"), where)
        class_id = entry["id"]
        if not isinstance(class_id, int) or isinstance(class_id, bool) or class_id < 0:
            raise ValueError(f"{where}: 'id' must be a non-negative int; got {class_id!r}")
        if class_id in seen:
            raise ValueError(f"{where}: class id {class_id} appears twice (the index is keyed by id)")
        seen.add(class_id)
        if entry["status"] not in STATUSES:
            raise ValueError(f"{where}: 'status' must be one of {STATUSES}; got {entry['status']!r}")
    return [dict(entry) for entry in classes]


def referenced_files(document: Mapping[str, Any]) -> list[str]:
    """Every file a class document refers to (renders, crops, maps, images, thumbnails), checked, once each.

    Examples
    --------
    >>> doc = {"id": 1, "concepts": [{"render": "files/1/r.png", "crops": ["files/1/c.png"],
    ...        "maps": [{"image": 0, "file": "files/1/m.png"}]}],
    ...        "images": [{"file": "files/1/i.png", "thumb": "files/1/t.png",
    ...                    "maps": [{"concept": 0, "file": "files/1/m.png"}]}]}
    >>> referenced_files(doc)
    ['files/1/r.png', 'files/1/c.png', 'files/1/m.png', 'files/1/i.png', 'files/1/t.png']
    """
    where = f"class document {document.get('id')!r}"

    def paths() -> Iterator[object]:
        for concept in document.get("concepts", []):
            if concept.get("render") is not None:
                yield concept["render"]
            yield from concept.get("crops", [])
            yield from (item["file"] for item in concept.get("maps", []))
        for image in document.get("images", []):
            yield image["file"]
            yield image["thumb"]
            yield from (item["file"] for item in image.get("maps", []))

    return list(dict.fromkeys(check_file_path(path, where) for path in paths()))


def class_payload(
    source: DocumentSource, entry: Mapping[str, Any], provenance: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What ``data/class/<id>.js`` holds: the class document when done, else the index's status record.

    A failed or pending class has no class document; its page shows its status and error from
    this record (with the index's ``provenance``), so every class of the model has a page and a
    link to it never breaks.
    """
    if entry["status"] != "done":
        keys = ("id", "short", "name", "status", "n_images", "n_important", "error")
        return {**{key: entry[key] for key in keys}, "provenance": dict(provenance or {})}
    document = source.class_document(int(entry["id"]))
    if not isinstance(document, Mapping):
        raise TypeError(f"class_document({entry['id']}) must return a dict; got {type(document).__name__}")
    where = f"class document {entry['id']}"
    _require(document, ("id", "short", "name", "provenance", "concepts", "similarity", "images"), where)
    if document["id"] != entry["id"]:
        raise ValueError(f"{where} says it is class {document['id']!r}")
    referenced_files(document)  # every path checked before any reaches a page
    return dict(document)


def _script(kind: str, key: int | None, document: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"the {kind} document is not JSON-ready (str, int, float, None, lists, dicts): {error}"
        ) from error
    # JSON allows these two line separators inside strings; older JavaScript does not.
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"{RECEIVER}({json.dumps(kind)},{json.dumps(key)},{text});\n"


def index_script(document: Mapping[str, Any]) -> str:
    """The text of ``data/index.js``: the index document handed to the page's receiver.

    Examples
    --------
    >>> index_script({"provenance": {"model": "m"}, "classes": []})
    'lensReceive("index",null,{"provenance":{"model":"m"},"classes":[]});\\n'
    """
    index_entries(document)
    return _script("index", None, document)


def class_script(class_id: int, payload: Mapping[str, Any]) -> str:
    """The text of ``data/class/<id>.js``: one class's payload (:func:`class_payload`) for the receiver.

    Examples
    --------
    >>> class_script(7, {"id": 7, "status": "pending"})
    'lensReceive("class",7,{"id":7,"status":"pending"});\\n'
    """
    return _script("class", int(class_id), payload)


def _prepare_out(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the export folder {out_dir} is a file; give a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / EXPORT_MARKER).is_file():
            raise ValueError(
                f"the export folder {out_dir} is not empty and holds no earlier export "
                f"(no {EXPORT_MARKER}); give a new or empty folder"
            )
        for name in ("data", "files"):  # an earlier export: its data are replaced, nothing else
            shutil.rmtree(out_dir / name, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def export_site(source: DocumentSource, out_dir: str | Path, *, progress: bool = True) -> Path:
    """Write the atlas as a static site that works from ``file://`` or any static host.

    The folder gets the viewer (``index.html``, ``app.js``, ``style.css``), ``data/index.js``,
    one ``data/class/<id>.js`` per class of the index (failed and pending classes included, as
    their status record) and a copy of every file the documents refer to, at the same relative
    path. A folder that holds an earlier export is refreshed; any other non-empty folder is refused.

    Parameters
    ----------
    source
        A document source (:class:`DocumentSource`), e.g. :class:`spyglass.lens.store.Atlas`.
    out_dir
        The folder to write (created if missing).
    progress
        Show a bar over the classes (on a terminal only).

    Returns
    -------
    pathlib.Path
        The exported ``index.html``: open it in a browser.

    Raises
    ------
    ValueError
        If a document breaks the contract (a file path outside ``files/``, a duplicate class id)
        or ``out_dir`` is a file or a non-empty folder that holds no export.
    FileNotFoundError
        If a document refers to a file that is not in the source's folder.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> class Empty:  # a source with no class built yet
    ...     root = Path(tempfile.mkdtemp())
    ...     def index_document(self):
    ...         return {"provenance": {"model": "demo"}, "classes": [{"id": 0, "short": "tench",
    ...             "name": "tench, Tinca tinca", "status": "pending", "n_images": 0,
    ...             "n_important": 0, "error": None}]}
    ...     def class_document(self, class_id):
    ...         raise KeyError(class_id)
    >>> page = export_site(Empty(), Path(tempfile.mkdtemp()) / "site")
    >>> sorted(p.name for p in page.parent.rglob("*") if p.is_file())
    ['.spyglass-lens-site', '0.js', 'app.js', 'favicon.svg', 'index.html', 'index.js', 'style.css']
    """
    root = Path(source.root).resolve()
    index = source.index_document()
    entries = index_entries(index)
    out_dir = _prepare_out(Path(out_dir))
    for name in STATIC_FILES:
        (out_dir / name).write_bytes(static_asset(name))
    (out_dir / "data" / "class").mkdir(parents=True)
    (out_dir / "data" / "index.js").write_text(index_script(index), encoding="utf-8")
    for entry in progress_bar(entries, enabled=progress, desc="export", unit="class"):
        payload = class_payload(source, entry, index["provenance"])
        for relative in referenced_files(payload):
            origin = (root / relative).resolve()
            if not origin.is_relative_to(root / "files") or not origin.is_file():
                raise FileNotFoundError(
                    f"class {entry['id']} refers to {relative}, which is not a file under {root / 'files'}"
                )
            target = out_dir / relative
            if not target.exists():  # maps are shared by a concept and an image
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin, target)
        script = class_script(entry["id"], payload)
        (out_dir / "data" / "class" / f"{entry['id']}.js").write_text(script, encoding="utf-8")
    (out_dir / EXPORT_MARKER).write_text("written by spyglass.lens.site.export_site\n", encoding="utf-8")
    return out_dir / "index.html"
