"""A real browser (Playwright driving Debian's Chromium) on the served atlas and on its export via file://.

The walk of the issue: search a class, open it, click a concept and see its crops, hover every point
of the cluster graph and see its thumbnail, open an image's view; no console error, no request
outside the site, and a class page that never loads the index. Screenshots go to the test's
``tmp_path``. Playwright never downloads a browser here: it drives ``chromium`` from the system
(``apt-get install chromium``), and the tests skip, saying why, where either is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lens.synthetic import SyntheticAtlas

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the test extra)"
    )
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Watched:
    """A page whose console errors, page errors and requests are all recorded."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.page.set_default_timeout(10_000)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def outside(self) -> list[str]:
        site = self.base.rsplit("/", 1)[0] + "/"
        return [url for url in self.requests if not url.startswith(site)]

    def images_loaded(self, selector: str) -> int:
        """Wait until every image of ``selector`` has loaded and decoded; their number."""
        self.page.locator(selector).first.wait_for()
        self.page.wait_for_function(
            "s => [...document.querySelectorAll(s)].every(i => i.complete && i.naturalWidth > 0)",
            arg=selector,
        )
        return self.page.locator(selector).count()


@pytest.fixture(params=["served", "exported"])
def site(request: pytest.FixtureRequest) -> str:
    if request.param == "served":
        return request.getfixturevalue("served") + "index.html"
    return request.getfixturevalue("exported").as_uri()


def test_the_walk_of_the_issue(browser: Any, site: str, small_atlas: SyntheticAtlas, tmp_path: Path) -> None:
    watched = Watched(browser, site)
    page = watched.page
    page.goto(site)
    page.fill("#search", "crane")
    visible = page.locator("#class-list li:not([hidden])")
    assert visible.count() == 2  # two classes named "crane", both there, told apart by id and full name
    assert [int(visible.nth(i).get_attribute("data-id")) for i in range(2)] == [0, 1]
    page.fill("#search", "3")  # a class id
    assert page.locator("#class-list li:not([hidden])").count() == 1
    page.fill("#search", "Tinca")  # a word of the full name only; a failed class, shown as such
    assert page.inner_text("#class-list li:not([hidden]) .badge") == "failed"
    page.fill("#search", "")
    counts = page.inner_text("#summary")
    assert "4 of 4 classes" in counts and "1 failed" in counts and "1 pending" in counts
    page.select_option("#important", index=1)
    n_important = int(page.locator("#important option").nth(1).get_attribute("value"))
    shown = page.locator("#class-list li:not([hidden])")
    expected = [
        c["id"]
        for c in small_atlas.index_document()["classes"]
        if c["status"] == "done" and c["n_important"] == n_important
    ]
    assert [int(shown.nth(i).get_attribute("data-id")) for i in range(shown.count())] == expected
    page.select_option("#important", index=0)
    page.fill("#search", "crane")
    page.screenshot(path=tmp_path / "index.png", full_page=True)

    page.click("#class-list li[data-id='1'] a")
    page.wait_for_selector("#concepts")
    document = small_atlas.class_document(1)
    assert "crane" in page.inner_text("h1") and "lifts and moves" in page.inner_text("main")
    assert page.locator("#importance .bar-row").count() == len(document["concepts"]) + 1  # and the residual
    assert "synthetic_resnet" in page.inner_text("#provenance") and "layer4" in page.inner_text("#provenance")

    r = len(document["concepts"])
    assert (
        page.locator("svg.similarity circle").count() == r
        and page.locator("svg.matrix rect").count() == r * r
    )
    concept = document["concepts"][2]
    page.click(f"#concepts a[data-concept='{concept['index']}']")
    assert page.url.endswith(f"#class/1/concept/{concept['index']}")
    assert watched.images_loaded("#crops img") == len(concept["crops"])
    assert [
        page.locator("#crops img").nth(i).get_attribute("src") for i in range(len(concept["crops"]))
    ] == concept["crops"]
    assert watched.images_loaded("#maps img") == len(concept["maps"])
    page.screenshot(path=tmp_path / "concept.png", full_page=True)

    points = page.locator("#cluster-graph circle")
    assert points.count() == len(document["images"])
    thumbs = []
    for i in range(points.count()):  # every point has its thumbnail, not half of them
        points.nth(i).hover(force=True)
        page.wait_for_selector("#tip:not([hidden])")
        watched.images_loaded("#tip img")
        thumbs.append(page.get_attribute("#tip img", "src"))
    assert thumbs == [image["thumb"] for image in document["images"]]
    page.screenshot(path=tmp_path / "hover.png")

    points.nth(5).click(force=True)
    page.wait_for_selector("#photo")
    assert page.url.endswith("#class/1/image/5")
    assert watched.images_loaded("#photo") == 1
    assert page.locator("#shares .bar-row").count() == len(document["images"][5]["shares"])
    assert page.get_attribute("#cluster-graph circle.current", "data-image") == "5"
    maps = document["images"][5]["maps"]
    assert page.locator("#image-maps img").count() == len(maps)
    assert "synthetic_resnet" in page.inner_text("#provenance")
    page.screenshot(path=tmp_path / "image.png", full_page=True)

    page.goto(site + "#class/1")  # a similar concept links to the concept itself, in the other class
    page.click("#concepts a[data-concept='0']")
    link = page.locator("#concept-panel ol.links").nth(1).locator("a").first
    target = link.get_attribute("href")
    link.click()
    page.wait_for_selector("#concept-panel")
    assert target.startswith("#class/0/concept/") and page.url.endswith(target)
    assert page.inner_text("#concept-panel h2").startswith(f"Concept {target.rsplit('/', 1)[1]}")

    page.goto(site + "#class/2")
    page.wait_for_selector(".error")
    assert "CUDA out of memory" in page.inner_text("main")
    assert watched.errors == [] and watched.outside() == [], (watched.errors[:5], watched.outside()[:5])
    page.close()


def test_a_class_page_loads_only_its_own_document(browser: Any, site: str) -> None:
    watched = Watched(browser, site)
    watched.page.goto(site + "#class/0")
    watched.page.wait_for_selector("#concepts")
    data = [url.rsplit("/data/", 1)[1] for url in watched.requests if "/data/" in url]
    assert data == ["class/0.js"]  # never the index of every class
    assert watched.errors == [] and watched.outside() == []
    watched.page.close()


def test_document_text_is_shown_as_text_never_run(browser: Any, tmp_path: Path) -> None:
    # Names and errors come from the model's class list and from exceptions: they may hold markup.
    from spyglass.lens.site import export_site
    from tests.lens.synthetic import ClassSpec

    hostile = "<img src=x onerror=\"document.title='ran'\">"
    atlas = SyntheticAtlas(
        tmp_path / "atlas",
        (ClassSpec(0, "<b>x</b>", hostile, "failed", "<script>document.title='ran'</script>"),),
    )
    page_file = export_site(atlas, tmp_path / "site", progress=False)  # file://: no CSP to rely on
    watched = Watched(browser, page_file.as_uri())
    watched.page.goto(page_file.as_uri())
    assert watched.page.inner_text("#class-list b") == "<b>x</b>"
    watched.page.goto(page_file.as_uri() + "#class/0")
    watched.page.wait_for_selector(".error")
    assert hostile in watched.page.inner_text("main") and "<script>" in watched.page.inner_text(".error")
    assert watched.page.title() == "spyglass atlas" and watched.page.locator("main img").count() == 0
    assert watched.errors == []
    watched.page.close()


def test_every_point_is_reachable_by_keyboard(browser: Any, served: str, small_atlas: SyntheticAtlas) -> None:
    watched = Watched(browser, served)
    page = watched.page
    page.goto(served + "#class/0")
    page.wait_for_selector("#cluster-graph circle")
    page.focus("#cluster-graph circle >> nth=4")
    page.wait_for_selector("#tip:not([hidden])")
    assert page.get_attribute("#tip img", "src") == small_atlas.class_document(0)["images"][4]["thumb"]
    page.keyboard.press("Enter")
    page.wait_for_selector("#photo")
    assert page.url.endswith("#class/0/image/4") and watched.errors == []
    page.close()
