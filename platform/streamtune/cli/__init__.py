"""The ``streamtune`` CLI."""
