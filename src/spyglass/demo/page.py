"""The demo's page builder: a small static HTML page with no template engine, and its CSS.

The demo report is a handful of sections of images and tables; a dependency such as
Jinja would add more than it saves. Everything user-provided is escaped here. The style
sheet below is the demo's own (its cards, attribution tables and crops); the atlas ships
its viewer separately.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

__all__ = ["Page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
h1 { margin-bottom: 0.2rem; } .subtitle { color: #666; margin-top: 0; }
section { margin-top: 2.5rem; } .cards { display: flex; flex-wrap: wrap; gap: 1.5rem; }
figure { margin: 0; width: 15rem; } figure img { width: 15rem; height: 15rem; object-fit: cover;
  border-radius: 4px; } figcaption { font-weight: 600; margin: 0.3rem 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; }
td { padding: 0.1rem 0.3rem; } td.b { width: 22%; }
td.p { text-align: right; font-variant-numeric: tabular-nums; width: 3.5rem; }
.bar { background: #4c78a8; height: 0.6rem; border-radius: 2px; }
.ok { color: #2a7a2a; } .miss { color: #b03030; }
.scroll { overflow-x: auto; }
table.attr { width: auto; table-layout: fixed; border-spacing: 0.3rem; border-collapse: separate; }
.attr th { width: 9rem; font-weight: 600; font-size: 0.85rem; vertical-align: bottom; text-align: left; }
.attr td { padding: 0; vertical-align: top; }
.attr img { width: 9rem; height: 9rem; display: block; border-radius: 3px; }
.attr .label { font-size: 0.8rem; width: 9rem; margin-top: 0.15rem; }
.attr .time { color: #666; font-weight: 400; }
.attr .crops { display: flex; gap: 2px; margin-top: 2px; }
.attr img.crop { width: calc((9rem - 6px) / 4); height: calc((9rem - 6px) / 4); border-radius: 2px; }
.ramp { display: flex; align-items: center; gap: 0.25rem; font-weight: 400; color: #666; font-size: 0.75rem; }
.ramp i { display: inline-block; width: 6rem; height: 0.5rem; border-radius: 2px; }
"""


@dataclass
class Page:
    """An HTML page of titled sections, written with its images into one folder.

    Examples
    --------
    >>> from spyglass.demo.page import Page
    >>> page = Page("Demo", subtitle="EfficientNet-Lite0")
    >>> page.add_section("Notes", "<p>hello</p>")
    >>> page.render().count("<section")
    1
    """

    title: str
    subtitle: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)
    images: dict[str, Image.Image] = field(default_factory=dict)

    def add_section(self, title: str, body_html: str) -> None:
        """Append a section; ``body_html`` is trusted markup built with :meth:`escape`."""
        self.sections.append((title, body_html))

    def add_image(self, name: str, image: Image.Image) -> str:
        """Register an image to be written as ``images/<name>.png``; return its relative URL."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        self.images[safe] = image
        return f"images/{safe}.png"

    @staticmethod
    def escape(text: object) -> str:
        return html.escape(str(text), quote=True)

    @staticmethod
    def table(rows: Sequence[Sequence[str]]) -> str:
        """Rows of already-escaped cells (a cell may carry its own ``<td>`` attributes)."""
        body = "".join(
            "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
            for row in rows
        )
        return f"<table>{body}</table>"

    def render(self) -> str:
        parts = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{self.escape(self.title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{self.escape(self.title)}</h1>",
        ]
        if self.subtitle:
            parts.append(f'<p class="subtitle">{self.escape(self.subtitle)}</p>')
        for title, body in self.sections:
            parts.append(f"<section><h2>{self.escape(title)}</h2>{body}</section>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, folder: str | Path) -> Path:
        """Write ``index.html`` and ``images/`` into ``folder``; return the page's path."""
        out = Path(folder)
        (out / "images").mkdir(parents=True, exist_ok=True)
        for name, image in self.images.items():
            image.save(out / "images" / f"{name}.png")
        index = out / "index.html"
        index.write_text(self.render(), encoding="utf-8")
        return index
