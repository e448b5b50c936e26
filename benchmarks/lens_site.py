"""The atlas viewer on 1,000 classes: page weight per class (bytes, gzipped) and render time in Chromium.

The atlas is the tests' synthetic document source (``tests/lens/synthetic.py``) at full settings:
1,000 classes named after ImageNet's, 10 concepts, 50 images, 10 crops, 5 maps per concept, the
shapes of the atlas contract, numbers rounded to 4 significant digits as the store does. Only the
measured classes have their PNG files written; the others' documents are the same either way.

Weights (no browser needed):

- a class page: ``index.html`` + ``data/class/<id>.js`` (HTML + JSON before images, the issue's
  budget of 40 KB; Lens: 369 KB), for every one of the 1,000 classes: median and maximum;
- the viewer's code (``app.js``, ``style.css``, ``favicon.svg``), loaded once and cached by every page;
- the index page: ``index.html`` + ``data/index.js``, loaded once, never part of a class page.

Render times (Chromium through Playwright, the site served on 127.0.0.1 by
:class:`spyglass.lens.server.SiteServer`): for ``--pages`` classes spread over the ids,

- cold: a new page opened at ``#class/<id>`` to the viewer's ``lens:rendered`` mark (navigation,
  HTML, JS, CSS, the class's script, the DOM built), then to every image in the viewport loaded;
- warm: from another class page, the hash changed to ``#class/<id>`` to the mark;
- the index page (1,000 rows) cold to the mark, and one keystroke's filtering of its rows.

Run: ``python benchmarks/lens_site.py [--pages 20] [--chromium /usr/bin/chromium]``; writes
``benchmarks/results/lens_site.json``. Needs playwright (the test extra) and Debian's chromium for the
render times; without them it reports the weights only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, RESULTS, load_average, log, positive_int, warn_if_busy

N_CLASSES = 1000
SETTINGS = {"n_images": 50, "n_concepts": 10, "n_crops": 10, "maps_per_concept": 5}


def synthetic_module() -> Any:
    # By path: a stray top-level `tests` package in some environments shadows the repository's.
    spec = importlib.util.spec_from_file_location(
        "lens_synthetic", REPO_ROOT / "tests" / "lens" / "synthetic.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def sizes(data: bytes) -> dict[str, int]:
    return {"bytes": len(data), "gzip": len(gzip.compress(data, compresslevel=6))}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "max": max(values), "min": min(values)}


def weights(atlas: Any) -> dict[str, Any]:
    from spyglass.lens.site import class_payload, class_script, index_entries, index_script, static_asset

    index = atlas.index_document()
    html = static_asset("index.html")
    pages = [
        sizes(html + class_script(entry["id"], class_payload(atlas, entry, index["provenance"])).encode())
        for entry in index_entries(index)
    ]
    code = b"".join(static_asset(name) for name in ("app.js", "style.css", "favicon.svg"))
    return {
        "class_page_html_json": {
            "bytes": summary([p["bytes"] for p in pages]),
            "gzip": summary([p["gzip"] for p in pages]),
        },
        "viewer_code_once": sizes(code),
        "index_page_once": sizes(html + index_script(index).encode()),
    }


def render_times(atlas: Any, ids: list[int], chromium: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from spyglass.lens.server import SiteServer

    cold, cold_images, warm = [], [], []
    errors: list[str] = []
    with SiteServer(atlas, port=0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            index_cold, search = [], []
            for _ in range(5):  # the index page: 1,000 rows built once, then filtered as the user types
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(server.url)
                page.wait_for_selector("#class-list li")
                index_cold.append(page.evaluate("performance.getEntriesByName('lens:rendered')[0].startTime"))
                search.append(
                    page.evaluate(
                        """() => { const box = document.getElementById('search');
                        const t0 = performance.now(); box.value = 'crane';
                        box.dispatchEvent(new Event('input'));
                        return performance.now() - t0; }"""
                    )
                )
                page.close()
            for position, class_id in enumerate(ids):
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.goto(f"{server.url}#class/{class_id}")
                page.wait_for_selector("#concepts")
                cold.append(page.evaluate("performance.getEntriesByName('lens:rendered')[0].startTime"))
                page.wait_for_function(
                    "() => [...document.querySelectorAll('main img')]"
                    ".filter(i => i.getBoundingClientRect().top < innerHeight)"
                    ".every(i => i.complete && i.naturalWidth > 0)"
                )
                cold_images.append(page.evaluate("performance.now()"))
                other = ids[(position + 1) % len(ids)]
                warm.append(
                    page.evaluate(
                        """([id, other]) => new Promise((done) => {
                            location.hash = `#class/${other}`;
                            const wait = (n, then) => {
                              const go = () => performance.getEntriesByName('lens:rendered').length > n
                                ? then() : requestAnimationFrame(go);
                              go();
                            };
                            wait(1, () => {
                              const t0 = performance.now();
                              location.hash = `#class/${id}`;
                              wait(2, () => done(performance.now() - t0));
                            });
                          })""",
                        [class_id, other],
                    )
                )
                page.close()
            browser.close()
        server.shutdown()
        thread.join(timeout=5)
    return {
        "index_cold_to_rendered_ms": summary(index_cold),
        "index_search_filter_ms": summary(search),
        "pages": len(ids),
        "cold_to_rendered_ms": summary(cold),
        "cold_to_visible_images_loaded_ms": summary(cold_images),
        "warm_hash_change_ms": summary(warm),
        "console_errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=positive_int, default=20, help="Class pages to open in Chromium.")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--out", type=Path, default=RESULTS / "lens_site.json")
    args = parser.parse_args()

    load_before = warn_if_busy()
    ids = sorted({round(i * (N_CLASSES - 1) / max(1, args.pages - 1)) for i in range(args.pages)})
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        atlas = synthetic_module().SyntheticAtlas.many(
            Path(folder), N_CLASSES, write_files=frozenset(ids), **SETTINGS
        )
        log(f"synthetic atlas of {N_CLASSES} classes in {time.perf_counter() - started:.1f} s")
        report: dict[str, Any] = {"classes": N_CLASSES, "settings": SETTINGS, "weights": weights(atlas)}
        try:
            import playwright  # noqa: F401
        except ImportError:
            playwright_missing = "playwright is not installed"
        else:
            playwright_missing = "" if Path(args.chromium).exists() else f"no chromium at {args.chromium}"
        if playwright_missing:
            log(f"render times skipped: {playwright_missing}")
            report["render"] = {"skipped": playwright_missing}
        else:
            report["render"] = render_times(atlas, ids, args.chromium)
    report["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    report["load_average_1min"] = {"before": load_before, "after": load_average()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    w = report["weights"]
    page = w["class_page_html_json"]
    settings = ", ".join(f"{k}={v}" for k, v in SETTINGS.items())
    print(f"atlas viewer on {N_CLASSES} synthetic classes ({settings})")
    print(f"{'':38}{'bytes':>10}{'gzipped':>10}")
    rows = [
        ("class page, HTML+JSON (median)", page["bytes"]["median"], page["gzip"]["median"]),
        ("class page, HTML+JSON (max)", page["bytes"]["max"], page["gzip"]["max"]),
        ("viewer code, once (JS+CSS+icon)", w["viewer_code_once"]["bytes"], w["viewer_code_once"]["gzip"]),
        ("index page, once (HTML+index)", w["index_page_once"]["bytes"], w["index_page_once"]["gzip"]),
    ]
    for label, raw, packed in rows:
        print(f"{label:38}{raw:>10.0f}{packed:>10.0f}")
    render = report["render"]
    if "skipped" not in render:
        print(
            f"Chromium, {render['pages']} class pages and the index, served on 127.0.0.1 (median / max ms):"
        )
        for key, label in [
            ("index_cold_to_rendered_ms", "index page (1,000 rows), cold"),
            ("index_search_filter_ms", "index search, one keystroke's filter"),
            ("cold_to_rendered_ms", "cold, to the page built"),
            ("cold_to_visible_images_loaded_ms", "cold, to the visible images loaded"),
            ("warm_hash_change_ms", "warm, from another class page"),
        ]:
            print(f"  {label:40}{render[key]['median']:>8.1f}{render[key]['max']:>8.1f}")
        print(f"  console errors: {len(render['console_errors'])}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
