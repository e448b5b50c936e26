"""Static HTML reports: the demo page and, later, the atlas pages share this builder."""

from spyglass.report.page import Page

__all__ = ["Page"]
