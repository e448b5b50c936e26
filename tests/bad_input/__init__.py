"""The bad-input contract: every public entry point, fed malformed input, refuses it cleanly."""
