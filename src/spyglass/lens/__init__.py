"""The atlas (issue 16): every class of a model, its concepts and where they appear, browsed in a web page.

The viewer half: :mod:`spyglass.lens.site` (the static site and its export) and
:mod:`spyglass.lens.server` (the read-only server), over any document source.
"""

from spyglass.lens.server import SiteServer, serve
from spyglass.lens.site import DocumentSource, export_site

__all__ = ["DocumentSource", "SiteServer", "export_site", "serve"]
