"""The one exception type users see: a message that names the file and what is wrong."""

from __future__ import annotations

from pathlib import Path


class GstrimError(Exception):
    """A user-facing error. The CLI prints it as one line and exits non-zero."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)
