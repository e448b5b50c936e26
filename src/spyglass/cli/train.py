"""``spyglass train …``: the commands that train a model to explain (mounted by :mod:`spyglass.cli.root`)."""

from __future__ import annotations

import typer

from spyglass.cli.lipschitz import lipschitz

__all__ = ["app"]

app = typer.Typer(help="Train models whose explanations are better (1-Lipschitz, …).", no_args_is_help=True)
app.command("lipschitz")(lipschitz)
