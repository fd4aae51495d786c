"""The exception types users see: a message that names the file and what is wrong."""

from __future__ import annotations

from pathlib import Path


class GstrimError(Exception):
    """A user-facing error. The CLI prints it as one line and exits non-zero."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class ConfigError(GstrimError):
    """A bad value of configuration fields. The template names each field as `{name}`: the library's message
    says the field (`gamma`), the command line's the flag it came from (`--gamma`)."""

    def __init__(self, template: str, *fields: str, path: str | Path | None = None):
        self.template, self.fields = template, fields
        super().__init__(template.format(**{f: f for f in fields}), path)

    def for_flags(self, flag_of) -> GstrimError:
        return GstrimError(self.template.format(**{f: flag_of(f) for f in self.fields}), self.path)
