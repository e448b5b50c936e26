"""Serve an atlas's viewer over HTTP: read-only, GET and HEAD only, every path kept inside the atlas.

Built on the standard library's :class:`http.server.ThreadingHTTPServer`. The server answers
exactly four kinds of path and 404s everything else:

- ``/``, ``/index.html``, ``/app.js``, ``/style.css``, ``/favicon.svg``: the viewer shipped with the package;
- ``/data/index.js`` and ``/data/class/<id>.js``: the documents, made from the source on the fly;
- ``/files/…``: the atlas's files, resolved and required to lie inside ``root/files``.

The documents are generated on request rather than from an export in a temporary folder: the
server starts at once on an atlas of any size (an export copies every image first), and it shows
a build in progress as classes finish. Generated scripts are cached for a few seconds in a small
LRU cache, enough for a page's burst of requests, short enough for a build's new classes to appear.
All calls into the source are made from one worker thread, one at a time; given a factory
instead of a source (``lambda: Atlas.open(path)``), the server opens the source in that thread,
so a source whose handles belong to the thread that made them (an SQLite connection) is safe
under concurrent requests.

Anything but GET and HEAD gets 405. A path is decoded once; if the decoded path still holds a
``%`` (double encoding), a backslash, a NUL, a ``..`` or ``.`` segment, it gets 404 before any
file system access, and the resolved file must still lie under the atlas's ``files`` folder (a
symbolic link out of it is refused too).
"""

from __future__ import annotations

import contextlib
import mimetypes
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from spyglass.lens.site import (
    STATIC_FILES,
    DocumentSource,
    class_payload,
    class_script,
    index_entries,
    index_script,
    static_asset,
)

__all__ = ["SiteServer", "serve"]

_CLASS_SCRIPT = re.compile(r"/data/class/(0|[1-9][0-9]{0,8})\.js")
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


SourceOrFactory = DocumentSource | Callable[[], DocumentSource]


def _open(source: SourceOrFactory) -> DocumentSource:
    if isinstance(source, DocumentSource):
        return source
    if callable(source):
        opened = source()
        if isinstance(opened, DocumentSource):
            return opened
        source = opened
    raise TypeError(
        "expected a document source (an object with root, index_document() and class_document(id)) "
        f"or a function that returns one; got {type(source).__name__}"
    )


class _Documents:
    """The data scripts of a source, made in one worker thread and kept a few seconds (LRU)."""

    def __init__(self, source: SourceOrFactory, max_entries: int = 64, seconds: float = 5.0) -> None:
        self.max_entries = max_entries
        self.seconds = seconds
        self._cache: OrderedDict[str, tuple[float, bytes | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lens-documents")
        try:
            self.source: DocumentSource = self._worker.submit(_open, source).result()
            self.root = self._worker.submit(lambda: Path(self.source.root)).result()
        except BaseException:
            self.close()
            raise

    def get(self, key: str) -> bytes | None:
        """The script for ``"index"`` or a class id's text; None for a class not in the index."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < self.seconds:
                self._cache.move_to_end(key)
                return hit[1]
        value = self._worker.submit(self._make, key).result()
        with self._lock:
            self._cache[key] = (now, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return value

    def _make(self, key: str) -> bytes | None:
        index = self.source.index_document()
        if key == "index":
            return index_script(index).encode("utf-8")
        entry = next((entry for entry in index_entries(index) if entry["id"] == int(key)), None)
        if entry is None:
            return None
        return class_script(entry["id"], class_payload(self.source, entry, index["provenance"])).encode(
            "utf-8"
        )

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


def _segments(raw_path: str) -> list[str] | None:
    """The path's segments if it is a clean path, else None (a 404 before any file is touched)."""
    path = unquote(urlsplit(raw_path).path, errors="strict")
    if not path.startswith("/") or any(bad in path for bad in ("%", "\\", "\x00")):
        return None
    parts = path[1:].split("/")
    if any(part in ("..", ".") for part in parts) or any(part == "" for part in parts[:-1]):
        return None
    return parts


class _Handler(BaseHTTPRequestHandler):
    server: SiteServer
    server_version = "spyglass-lens"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _refuse(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def __getattr__(self, name: str) -> Callable[[], None]:
        # Every other method (POST, PUT, DELETE, PATCH, OPTIONS, made-up ones) is a 405, not a 501.
        if name.startswith("do_"):
            return self._refuse
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _answer(self, with_body: bool) -> None:
        try:
            found = self._find()
        except Exception as error:  # a broken document: the page says so, the server stays up
            self.log_error("%s", f"{self.path}: {type(error).__name__}: {error}")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"the atlas could not be read\n", ".txt", with_body)
            return
        if found is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", ".txt", with_body)
        else:
            self._send(HTTPStatus.OK, found[0], found[1], with_body)

    def _find(self) -> tuple[bytes, str] | None:
        try:
            parts = _segments(self.path)
        except UnicodeDecodeError:
            return None
        if parts is None:
            return None
        path = "/" + "/".join(parts)
        if path in ("/", "/index.html"):
            return self.server.assets["index.html"], ".html"
        if len(parts) == 1 and parts[0] in STATIC_FILES:
            return self.server.assets[parts[0]], Path(parts[0]).suffix
        if path == "/data/index.js":
            script = self.server.documents.get("index")
            return (script, ".js") if script is not None else None
        match = _CLASS_SCRIPT.fullmatch(path)
        if match:
            script = self.server.documents.get(match.group(1))
            return (script, ".js") if script is not None else None
        if parts[0] == "files" and len(parts) >= 2:
            files = self.server.files_root
            candidate = files.joinpath(*parts[1:]).resolve()
            if candidate.is_relative_to(files) and candidate.is_file():
                return candidate.read_bytes(), candidate.suffix
        return None

    def _send(self, status: HTTPStatus, body: bytes, suffix: str, with_body: bool) -> None:
        kind = _TYPES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0] or "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind + ("; charset=utf-8" if kind.startswith("text/") else ""))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        # The page may load only from this server: no CDN, no other origin, no fetch at all.
        self.send_header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'",
        )
        self.send_header("Cache-Control", "no-cache" if suffix in (".js", ".html") else "max-age=3600")
        self.end_headers()
        if with_body:
            self.wfile.write(body)


class SiteServer(ThreadingHTTPServer):
    """A read-only HTTP server of an atlas's viewer over a document source.

    Parameters
    ----------
    source
        A document source (:class:`spyglass.lens.site.DocumentSource`), or a function that opens
        one (called once, in the thread that makes the documents).
    host, port
        Where to listen; ``port=0`` picks a free port (see :attr:`url`).
    verbose
        Log each request on stderr.
    cache_seconds
        How long a generated data script is reused before the source is asked again.

    Examples
    --------
    >>> import tempfile, threading, urllib.request
    >>> from pathlib import Path
    >>> class Empty:
    ...     root = Path(tempfile.mkdtemp())
    ...     def index_document(self):
    ...         return {"provenance": {"model": "demo"}, "classes": []}
    ...     def class_document(self, class_id):
    ...         raise KeyError(class_id)
    >>> with SiteServer(Empty(), port=0) as server:
    ...     thread = threading.Thread(target=server.serve_forever, daemon=True)
    ...     thread.start()
    ...     urllib.request.urlopen(server.url + "data/index.js").read()[:20]
    ...     server.shutdown()
    b'lensReceive("index",'
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        source: SourceOrFactory,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        verbose: bool = False,
        cache_seconds: float = 5.0,
    ) -> None:
        self.verbose = verbose
        self.assets = {name: static_asset(name) for name in STATIC_FILES}
        self.documents = _Documents(source, seconds=cache_seconds)
        self.root = self.documents.root
        self.files_root = (self.root / "files").resolve()
        try:
            super().__init__((host, port), _Handler)
        except BaseException:
            self.documents.close()
            raise

    @property
    def url(self) -> str:
        """The site's address, e.g. ``http://127.0.0.1:8000/``."""
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that closes a page while its images load drops the connection: not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self.documents.close()


def serve(
    source: SourceOrFactory, host: str = "127.0.0.1", port: int = 8000, *, verbose: bool = True
) -> None:
    """Serve an atlas's viewer until interrupted (Ctrl-C): read-only, on 127.0.0.1 by default.

    See :class:`SiteServer` for what is served; an export (:func:`spyglass.lens.site.export_site`)
    gives the same site as files.

    Parameters
    ----------
    source
        A document source, e.g. :class:`spyglass.lens.store.Atlas`, or a function that opens one.
    host, port
        Where to listen. Another host than 127.0.0.1 exposes the atlas to the network.
    verbose
        Print the address, then log each request on stderr.
    """
    with SiteServer(source, host, port, verbose=verbose) as server:
        if verbose:
            print(f"serving the atlas {server.root} at {server.url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops it
            server.serve_forever()
