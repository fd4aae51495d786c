"""Configuration fields that describe themselves, so the command line is derived from the library.

`option(default, help, ...)` is a dataclass field carrying its help text, its choices (a sequence, or a
callable evaluated when the parser is built, such as the names of a registry) and, for fields of which at
most one may be given, the name of their group. `gstrim.cli` turns every such field into a flag
(`--field-name`, or `flag=`) with the library's default in its help.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from gstrim.errors import GstrimError


def option(default: Any, help: str, *, flag: str | None = None, choices: Sequence | Callable | None = None,
           exclusive: str | None = None, metavar: str | None = None, nargs: str | None = None) -> Any:
    """A described field. A bool defaulting to True is switched off by its flag (name it: `--no-...`); a list
    takes several values (`nargs`, default "+")."""
    metadata = {"help": help, "flag": flag, "choices": choices, "exclusive": exclusive, "metavar": metavar,
                "nargs": nargs}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(config_cls, name: str) -> str:
    """The command-line flag of a field of `config_cls` (or of any field name)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)} if config_cls is not None else {}
    custom = fields[name].metadata.get("flag") if name in fields else None
    return custom or "--" + name.replace("_", "-")


def from_record(config_cls, settings: dict, where: str = "config.json"):
    """`config_cls` from settings a run recorded, possibly with an older gstrim: a setting this version no
    longer has is dropped when it was unset (None or False), and refused when it changed what the run did; a
    setting newer than the record takes the value in `config_cls.RECORDED_BEFORE` (what runs did before it
    existed), else its default."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    settings = {**getattr(config_cls, "RECORDED_BEFORE", {}), **settings}
    retired = {k: v for k, v in settings.items() if k not in names}
    used = {k: v for k, v in retired.items() if v not in (None, False)}
    if used:
        raise GstrimError("recorded with a setting this gstrim no longer has: "
                          + ", ".join(f"{k}={v!r}" for k, v in used.items()), where)
    return config_cls(**{k: v for k, v in settings.items() if k in names})


def differing(recorded: dict, wanted: dict) -> list[str]:
    """The settings whose values two flat records disagree on (a key one lacks counts as None there)."""
    return sorted(k for k in recorded.keys() | wanted.keys() if recorded.get(k) != wanted.get(k))
