"""Errors shared across the engine. Each carries a one-line message naming the problem and the fix."""


class CheckpointError(ValueError):
    """A checkpoint folder is missing files or is corrupt."""
