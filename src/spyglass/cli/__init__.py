"""The ``spyglass`` command line."""
