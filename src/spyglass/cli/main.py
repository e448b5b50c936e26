"""Entry point of the ``spyglass`` script (``pyproject.toml``) and of ``python -m spyglass.cli``."""

from spyglass.cli.root import app
from spyglass.runtime import tune_allocator

__all__ = ["app", "main"]


def main() -> None:
    """Tune the allocator for large batches (DESIGN.md), then run the command line."""
    tune_allocator()
    app(prog_name="spyglass")


if __name__ == "__main__":
    main()
