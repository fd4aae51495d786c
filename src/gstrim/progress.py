"""The single progress helper: library code reports long work through it, never with print."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")

# stderr, so that machine-readable stdout (e.g. `gstrim info --json`) stays clean.
console = Console(stderr=True)
_enabled = True


def set_enabled(enabled: bool) -> None:
    """Turn progress bars on or off (the CLI's --quiet; tests)."""
    global _enabled
    _enabled = enabled


def _show() -> bool:
    return _enabled and sys.stderr.isatty()


@contextmanager
def task(description: str, total: int | None = None) -> Iterator[callable]:
    """Context manager yielding `advance(n=1, **fields)`; draws a bar on a terminal."""
    if not _show():
        yield lambda n=1, **fields: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=True,
    ) as bar:
        tid = bar.add_task(description, total=total, status="")

        def advance(n: int = 1, **fields) -> None:
            status = "  ".join(f"{k} {v}" for k, v in fields.items())
            bar.update(tid, advance=n, status=status)

        yield advance


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with task(description, total) as advance:
        for item in items:
            yield item
            advance()


def log(message: str) -> None:
    """A one-line status message (stderr), suppressed by --quiet."""
    if _enabled:
        console.print(message, highlight=False, soft_wrap=True)  # one line each, paths unbroken
