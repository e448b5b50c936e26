"""``spyglass lens serve`` and ``spyglass lens export``: browse an atlas, served or as static files.

``register(app)`` adds both commands to the ``spyglass lens`` group (:mod:`spyglass.cli.lens`).
The atlas is opened through :meth:`spyglass.lens.store.Atlas.open`, imported inside each command,
so that this module imports on its own and ``spyglass --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spyglass.cli._prelude import ProgressOption, user_errors

if TYPE_CHECKING:
    from spyglass.lens.site import DocumentSource

__all__ = ["export_command", "register", "serve_command"]

AtlasArgument = Annotated[
    Path, typer.Argument(metavar="ATLAS", help="The atlas folder (written by `spyglass lens build`).")
]


def _check_atlas(atlas: Path) -> Path:
    if not atlas.is_dir():
        raise ValueError(
            f"ATLAS {atlas} is not a folder: give the folder that `spyglass lens build --out` wrote"
        )
    return atlas


def _open(atlas: Path) -> DocumentSource:
    from spyglass.lens.store import Atlas

    source: DocumentSource = Atlas.open(atlas)
    return source


def serve_command(
    atlas: AtlasArgument,
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on (0: any free one).")
    ] = 8000,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; another than 127.0.0.1 opens the atlas to the network."
        ),
    ] = "127.0.0.1",
) -> None:
    """Serve the atlas ATLAS's pages on 127.0.0.1 (read-only) until Ctrl-C.

    Example:

    \b
        spyglass lens serve atlas/ --port 8000
    """
    from spyglass.lens.server import serve

    with user_errors():
        _check_atlas(atlas)
        # A factory, not an opened atlas: the server opens it in the one thread that reads it.
        serve(lambda: _open(atlas), host=host, port=port)


def export_command(
    atlas: AtlasArgument,
    out: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", help="Folder to write the site into (new, empty, or an earlier export)."
        ),
    ],
    progress: ProgressOption = True,
) -> None:
    """Write the atlas ATLAS as a static site in DIR that opens from file:// or any static host.

    Example:

    \b
        spyglass lens export atlas/ site/
    """
    from spyglass.lens.site import export_site

    with user_errors():
        _check_atlas(atlas)
        page = export_site(_open(atlas), out, progress=progress)
    typer.echo(str(page))


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``export`` to the ``spyglass lens`` group ``app``.

    Examples
    --------
    >>> lens = typer.Typer()
    >>> register(lens)
    >>> sorted(command.name for command in lens.registered_commands)
    ['export', 'serve']
    """
    app.command("serve")(serve_command)
    app.command("export")(export_command)
