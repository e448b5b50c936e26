"""spyglass: explain what large vision models see, and where."""

__version__ = "0.1.0"

__all__ = ["__version__"]
