"""Errors a user can act on: each names the thing at fault and how to fix it.

The CLI and the dashboard catch :class:`CxrxaiError` and show its message instead of a
traceback; anything else is a bug.
"""

from __future__ import annotations


class CxrxaiError(Exception):
    """Base class for every error caused by user input (files, settings, checkpoints)."""


class ImageReadError(CxrxaiError):
    """An image file could not be read as a single 2-D X-ray."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read image '{self.path}': {reason}")


class DatasetError(CxrxaiError):
    """A dataset folder, manifest or annotation file is missing or malformed."""


class CheckpointError(CxrxaiError):
    """A checkpoint or its model card is missing, invalid or does not fit the weights."""


class PacsError(CxrxaiError):
    """A PACS could not be reached, refused a request, or answered something unusable.
    The message names the PACS by its address without credentials."""
