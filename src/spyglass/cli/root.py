"""The root ``spyglass`` command, assembled from one module per family of commands.

A family module (:mod:`~spyglass.cli.predict`, :mod:`~spyglass.cli.explain`, …) adds its
commands to the root with ``register(app)``. A family whose commands read better as
sub-commands (``spyglass train harmonize``, ``spyglass lens build``) is a ``typer.Typer``
of its own, mounted under one name with :func:`mount`.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import typer
from typer import _click
from typer.core import TyperGroup
from typer.main import get_command_name

from spyglass.cli import alignment, concepts, demo, evaluate, explain, lens, predict, train, visualize
from spyglass.cli._prelude import one_line

__all__ = ["FAMILIES", "GROUPS", "OneLineErrors", "app", "build_app", "mount", "one_line_warnings"]

# Modules whose `register(app)` adds their commands at the top level, in the order of `--help`.
FAMILIES = (predict, explain, evaluate, alignment, concepts, visualize, demo)


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Print every warning of the block as one line ``warning: …`` on stderr, without source lines.

    Python's default shows the file, the line number and the source line of the ``warn``
    call, which reads like a traceback on a command line; the user there wrote no code.
    """

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        typer.secho(f"warning: {one_line(str(message))}", fg=typer.colors.YELLOW, err=True)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


class OneLineErrors(TyperGroup):
    """The root group: click's usage errors as one line ``error: …`` (exit code 2), warnings likewise.

    Click prints a usage error as a usage line, a hint and the message; a user error of
    spyglass's own is one line (:func:`spyglass.cli._prelude.user_errors`). The same line for
    both makes every failure of the command line read the same.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        with one_line_warnings():
            if not standalone_mode:
                return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            try:
                code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            except _click.exceptions.NoArgsIsHelpError as error:  # `spyglass` alone: the help
                error.show()
                sys.exit(error.exit_code)
            except _click.exceptions.ClickException as error:
                ctx = getattr(error, "ctx", None)
                where = ctx.command_path if ctx is not None else "spyglass"
                hint = f" (see `{where} --help`)" if isinstance(error, _click.exceptions.UsageError) else ""
                typer.secho(f"error: {one_line(error.format_message())}{hint}", fg=typer.colors.RED, err=True)
                sys.exit(error.exit_code)
            except typer.Abort:
                typer.echo("Aborted!", err=True)
                sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _command_names(app: typer.Typer) -> set[str]:
    names = set()
    for command in app.registered_commands:
        if command.name:
            names.add(command.name)
        elif command.callback is not None:
            names.add(get_command_name(command.callback.__name__))
    names.update(group.name for group in app.registered_groups if isinstance(group.name, str))
    return names


def mount(app: typer.Typer, group: typer.Typer, name: str, *, help: str | None = None) -> None:
    """Add ``group``'s commands to ``app`` as ``spyglass NAME COMMAND …``.

    Parameters
    ----------
    app
        The root (or any) command.
    group
        A ``typer.Typer`` with at least one command: an empty group would be a stub.
    name
        The group's word on the command line; must not be taken by a command of ``app``.
    help
        The group's line in ``spyglass --help`` (default: the group's own help).

    Raises
    ------
    ValueError
        If ``name`` is not a lowercase word, is taken, or the group has no command.

    Examples
    --------
    >>> lens = typer.Typer(help="Build and serve the atlas.")
    >>> @lens.command()
    ... def build() -> None:
    ...     '''Build the atlas.'''
    >>> root = build_app()
    >>> mount(root, lens, "lens")
    >>> "lens" in _command_names(root)
    True
    """
    if not isinstance(group, typer.Typer):
        raise TypeError(f"a command group must be a typer.Typer; got {type(group).__name__}")
    if not name or not all(part.isalnum() and part.islower() for part in name.split("-")):
        raise ValueError(f"a command group's name must be a lowercase word such as 'train'; got {name!r}")
    if name in _command_names(app):
        raise ValueError(f"spyglass already has a command or group named {name!r}")
    if not group.registered_commands and not group.registered_groups:
        raise ValueError(f"command group {name!r} has no command; mount it once it has one")
    if help is None:
        app.add_typer(group, name=name)
    else:
        app.add_typer(group, name=name, help=help)


def build_app(groups: Sequence[tuple[str, typer.Typer]] = ()) -> typer.Typer:
    """A fresh root command: every family's commands, then each ``(name, group)`` mounted."""
    app = typer.Typer(
        name="spyglass",
        cls=OneLineErrors,
        help="Explain what large vision models see, and where.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    for family in FAMILIES:
        family.register(app)
    for name, group in groups:
        mount(app, group, name)
    return app


# Families of sub-commands, each mounted under its word: `spyglass train lipschitz`.
GROUPS = (("train", train.app), ("lens", lens.app))

app = build_app(GROUPS)
