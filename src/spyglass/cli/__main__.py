"""``python -m spyglass.cli``: the ``spyglass`` command without the installed script."""

from spyglass.cli.main import main

main()
