"""The single progress helper: library code reports long work through it, never with print."""

from __future__ import annotations

import os
import sys
import time
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


# Where stderr is not a terminal (a log file, a batch job), a long task prints a line this often instead of
# a bar: seconds, from GSTRIM_PROGRESS_EVERY (0: never).
LOG_EVERY_S = float(os.environ.get("GSTRIM_PROGRESS_EVERY", "60"))


def _show() -> bool:
    return _enabled and sys.stderr.isatty()


def duration(seconds: float) -> str:
    """A short human duration: 42s, 3m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _LogLines:
    """`advance` for a non-terminal: a line with the count, the time spent and the time left, every
    LOG_EVERY_S seconds (the first after one period, so that short tasks stay silent)."""

    def __init__(self, description: str, total: int | None):
        self.description, self.total = description, total
        self.done = self.last_done = 0
        self.start = self.last = time.monotonic()
        self.fields: dict = {}

    def __call__(self, n: int = 1, **fields) -> None:
        self.done += n
        self.fields = fields or self.fields
        now = time.monotonic()
        if now - self.last < LOG_EVERY_S:
            return
        # The time left at the pace of the last period (a trim's steps get faster as Gaussians go), or of the
        # whole task when the period saw too few steps to tell (a scoring pass between two of them); none yet
        # when neither did.
        enough = max(1, (self.total or 0) // 100)
        steps, spent = self.done - self.last_done, now - self.start
        pace = (now - self.last) / steps if steps >= enough else spent / self.done if self.done >= enough else None
        self.last, self.last_done = now, self.done
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        left = ""
        if self.total and pace is not None:
            left = f", about {duration(pace * (self.total - self.done))} left"
        status = "".join(f"  {k} {v}" for k, v in self.fields.items())
        log(f"{self.description}: {count} in {duration(spent)}{left}{status}")


@contextmanager
def task(description: str, total: int | None = None) -> Iterator[callable]:
    """Context manager yielding `advance(n=1, **fields)`: a bar with the time left on a terminal, a line
    now and then elsewhere; the status fields stay as last given."""
    if not _show():
        yield _LogLines(description, total) if _enabled and LOG_EVERY_S > 0 else (lambda n=1, **fields: None)
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
            status = {"status": "  ".join(f"{k} {v}" for k, v in fields.items())} if fields else {}
            bar.update(tid, advance=n, **status)

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
