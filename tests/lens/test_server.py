"""The server: read-only, nothing outside the atlas reachable by any spelling of a path, steady under load."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from spyglass.lens.server import SiteServer
from spyglass.lens.site import class_payload, class_script, index_script, static_asset
from tests.lens.synthetic import SyntheticAtlas


def request(base: str, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict, bytes]:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw_request(base: str, line: bytes) -> bytes:
    """Send a request line byte for byte (http.client refuses some of the bytes an attacker sends)."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_it_serves_the_viewer_the_documents_and_the_files(small_atlas: SyntheticAtlas, served: str) -> None:
    status, headers, body = request(served, "/")
    assert (
        status == 200
        and headers["Content-Type"].startswith("text/html")
        and body == static_asset("index.html")
    )
    assert request(served, "/app.js")[2] == static_asset("app.js")
    assert request(served, "/data/index.js")[2] == index_script(small_atlas.index_document()).encode()
    entry = small_atlas.index_document()["classes"][1]
    expected = class_script(1, class_payload(small_atlas, entry, small_atlas.provenance())).encode()
    assert request(served, "/data/class/1.js")[2] == expected
    status, headers, body = request(served, "/files/1/thumb-7.png")
    assert (status, headers["Content-Type"]) == (200, "image/png")
    assert body == (small_atlas.root / "files/1/thumb-7.png").read_bytes()
    assert "default-src 'none'" in headers["Content-Security-Policy"]  # no other origin, ever
    status, headers, body = request(served, "/data/class/2.js")  # the failed class: its status record
    assert status == 200 and b'"status":"failed"' in body


def test_head_answers_like_get_without_a_body(served: str) -> None:
    status, headers, body = request(served, "/style.css", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(static_asset("style.css"))


TRAVERSALS = [
    "/../../etc/passwd",
    "/files/../../etc/passwd",
    "/files/../../../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/files/%2e%2e/%2e%2e/etc/passwd",
    "/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/files/..%2f..%2f..%2fetc%2fpasswd",
    "/files/%252e%252e/%252e%252e/etc/passwd",  # double-encoded
    "/files/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/files/..\\..\\..\\etc\\passwd",
    "/files/%5c..%5c..%5cetc%5cpasswd",
    "/files/0/thumb-1.png%00.txt",
    "/files/0/thumb-1.png%2500",
    "/files/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",  # overlong UTF-8 dots
    "/files//etc/passwd",
    "//etc/passwd",
    "/files/0/../0/thumb-1.png",  # a '..' is refused even when it would land inside
    "/files/./0/thumb-1.png",
    "/files/leak",  # a symbolic link inside files/ that points out of the atlas
    "/files/",
    "/files",
    "/data/class/-1.js",
    "/data/class/01.js",
    "/data/class/99.js",  # not a class of the index
    "/data/class/1.js/../../../etc/passwd",
    "/static/app.js",
    "/site.py",
    "/etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/%2e%2e%5c%2e%2e%5cetc%5cpasswd",
]


@pytest.fixture
def leak(small_atlas: SyntheticAtlas) -> Iterator[None]:
    link = small_atlas.root / "files" / "leak"
    os.symlink("/etc/passwd", link)
    yield
    link.unlink()


@pytest.mark.parametrize("path", TRAVERSALS)
def test_every_spelling_of_a_path_out_of_the_atlas_gets_404(served: str, leak: None, path: str) -> None:
    status, _, body = request(served, path)
    assert status == 404, (path, body[:80])
    assert b"root:" not in body


@pytest.mark.parametrize(
    "line", [b"GET /files/0/thumb-1.png\x00.txt HTTP/1.1", b"GET /files/..\\..\\etc\\passwd HTTP/1.1"]
)
def test_raw_bytes_in_the_request_line_get_404(served: str, line: bytes) -> None:
    answer = raw_request(served, line)
    assert answer.startswith((b"HTTP/1.1 404", b"HTTP/1.0 404", b"HTTP/1.1 400", b"HTTP/1.0 400")), answer[
        :60
    ]
    assert b"root:" not in answer


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
def test_there_is_no_write_endpoint(small_atlas: SyntheticAtlas, served: str, method: str) -> None:
    before = sorted(p.relative_to(small_atlas.root) for p in small_atlas.root.rglob("*"))
    for path in ("/", "/files/0/new.png", "/data/class/0.js"):
        status, headers, _ = request(served, path, method, body=b"\x89PNG overwritten")
        assert status == 405 and headers["Allow"] == "GET, HEAD", (method, path, status)
    assert sorted(p.relative_to(small_atlas.root) for p in small_atlas.root.rglob("*")) == before


def test_a_bounded_load_of_concurrent_requests_is_answered(small_atlas: SyntheticAtlas, served: str) -> None:
    paths = ["/", "/app.js", "/style.css", "/data/index.js", "/data/class/0.js", "/data/class/1.js"]
    paths += [f"/files/{c}/thumb-{i}.png" for c in (0, 1) for i in range(20)]
    expected = {path: request(served, path)[2] for path in paths}
    jobs = [paths[i % len(paths)] for i in range(200)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda path: (path, request(served, path)), jobs))
    assert len(answers) == 200
    for path, (status, _, body) in answers:
        assert status == 200 and body == expected[path], path


class Recording(SyntheticAtlas):
    """Remembers the thread of every call into it, and breaks class 1's document on demand."""

    threads: set[int]
    broken = False

    def index_document(self) -> dict[str, Any]:
        self.threads.add(threading.get_ident())
        return super().index_document()

    def class_document(self, class_id: int) -> dict[str, Any]:
        self.threads.add(threading.get_ident())
        if self.broken and class_id == 1:
            raise RuntimeError("the store is corrupt")
        return super().class_document(class_id)


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[tuple[Recording, str, set[int]]]:
    atlas = Recording(tmp_path / "atlas", n_images=4, n_concepts=2, n_crops=1, maps_per_concept=1)
    atlas.threads = set()
    opened_in: set[int] = set()

    def factory() -> Recording:
        opened_in.add(threading.get_ident())
        return atlas

    with SiteServer(factory, port=0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield atlas, server.url, opened_in
        server.shutdown()
        thread.join(timeout=5)


def test_the_source_is_opened_and_called_in_one_thread(recording: tuple[Recording, str, set[int]]) -> None:
    # An SQLite connection may be used only by the thread that made it: the server keeps to one.
    atlas, url, opened_in = recording
    paths = ["/data/index.js", "/data/class/0.js", "/data/class/1.js", "/data/class/3.js"] * 10
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda path: request(url, path)[0], paths))
    assert statuses == [200] * len(paths)  # class 3 is pending: its status record
    assert len(opened_in) == 1 and atlas.threads == opened_in
    assert threading.get_ident() not in opened_in


def test_a_broken_document_is_a_500_and_the_server_stays_up(
    recording: tuple[Recording, str, set[int]],
) -> None:
    atlas, url, _ = recording
    atlas.broken = True
    status, _, body = request(url, "/data/class/1.js")
    assert status == 500 and b"corrupt" not in body  # the error goes to the log, not to the page
    assert request(url, "/data/class/0.js")[0] == 200


def test_a_source_must_have_the_contract() -> None:
    with pytest.raises(TypeError, match="expected a document source"):
        SiteServer(object(), port=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got str"):
        SiteServer(lambda: "atlas", port=0)  # type: ignore[arg-type,return-value]


class Building(SyntheticAtlas):
    """An atlas whose class 3 is pending until ``finished`` (a build still running)."""

    finished = False

    def index_document(self) -> dict[str, Any]:
        index = super().index_document()
        if self.finished:
            index["classes"][3] = {**index["classes"][3], "status": "failed", "error": "it ran out of memory"}
        return index


def test_a_build_in_progress_shows_once_the_cache_expires(tmp_path: Path) -> None:
    atlas = Building(tmp_path / "atlas", n_images=2, n_concepts=2, n_crops=1, maps_per_concept=1)
    with SiteServer(atlas, port=0, cache_seconds=0.3) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        assert b'"status":"pending"' in request(server.url, "/data/class/3.js")[2]
        atlas.finished = True
        assert b'"status":"pending"' in request(server.url, "/data/class/3.js")[2]  # cached
        time.sleep(0.4)
        assert b"ran out of memory" in request(server.url, "/data/class/3.js")[2]
        server.shutdown()
        thread.join(timeout=5)
