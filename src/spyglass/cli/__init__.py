"""The ``spyglass`` command line: explain what vision models see, from the shell.

Every command runs on the embedded default model (EfficientNet-Lite0, offline) unless
``--model`` names another (see ``spyglass models``). One module per family of commands
(:mod:`~spyglass.cli.predict`, :mod:`~spyglass.cli.explain`, :mod:`~spyglass.cli.evaluate`,
:mod:`~spyglass.cli.concepts`, :mod:`~spyglass.cli.visualize`, :mod:`~spyglass.cli.demo`),
one shared prelude (:mod:`~spyglass.cli._prelude`), the root that assembles them and
mounts groups of sub-commands (:mod:`~spyglass.cli.root`), and the script's entry point
(:func:`spyglass.cli.main.main`).
"""

from spyglass.cli.root import app, build_app, mount

__all__ = ["app", "build_app", "mount"]
