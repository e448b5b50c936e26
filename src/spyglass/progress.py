"""Progress bars for every loop that can take more than a few seconds.

One wrapper around ``tqdm`` so that all of spyglass follows the same rule: a bar is
shown when the caller asks for one (``progress=True``, the default) *and* stderr is a
terminal; logs and CI output stay clean.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["progress_bar"]

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T],
    *,
    enabled: bool = True,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar, shown only when enabled and on a terminal."""
    # disable=None is tqdm's "off when not a TTY"; True forces it off.
    bar = tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=None if enabled else True,
        leave=False,
        dynamic_ncols=True,
    )
    yield from bar
