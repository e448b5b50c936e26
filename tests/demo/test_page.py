"""The demo's page builder: escaping, image names, and what it writes."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from spyglass.demo.page import Page


def test_page_escapes_text_and_writes_its_images(tmp_path: Path) -> None:
    page = Page("a <b> & c", subtitle='"quoted"')
    url = page.add_image("photo of x/y", Image.new("RGB", (4, 3), "red"))
    assert url == "images/photo_of_x_y.png"  # no path separators or spaces reach the file name
    page.add_section("One", f'<img src="{url}">' + page.table([[page.escape("<x>"), '<td class="p">1</td>']]))
    html = page.render()
    assert "<title>a &lt;b&gt; &amp; c</title>" in html and "&quot;quoted&quot;" in html
    assert '<td>&lt;x&gt;</td><td class="p">1</td>' in html
    assert html.count("<section>") == 1 and "<style>" in html and ".attr img.crop" in html
    index = page.write(tmp_path / "out")
    assert index == tmp_path / "out" / "index.html" and index.read_text(encoding="utf-8") == html
    assert Image.open(tmp_path / "out" / "images" / "photo_of_x_y.png").size == (4, 3)
