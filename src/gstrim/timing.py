"""Where a run's time goes, without a profiler: named phases (load, targets, scoring, fit, evaluation, write...)
timed by `with phase(name):` anywhere below a run's `recording()`, and written to its `results.json`.

A phase's seconds exclude the phases nested in it (the fit loop's time is without the prunes' scoring inside
it), so the phases add up to the run's time. On a GPU each phase edge waits for the device (work queued by a
phase is counted in it), and nothing else does: timing never adds a wait per iteration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


@dataclass
class _Phase:
    seconds: float = 0.0
    times: int = 0  # how often it ran (prunes scored, stages...)
    items: int = 0  # what it processed, when it counts something (fit: iterations)


@dataclass
class Phases:
    """One run's phases, in the order they first ran."""

    phases: dict[str, _Phase] = field(default_factory=dict)
    _open: list = field(default_factory=list)  # [name, start, seconds of nested phases]

    def to_json(self) -> dict:
        out = {}
        for name, p in self.phases.items():
            entry = {"seconds": round(p.seconds, 3), "times": p.times}
            if p.items:
                entry |= {"items": p.items, "per_second": round(p.items / p.seconds, 2) if p.seconds > 0 else None}
            out[name] = entry
        return out

    def describe(self) -> str:
        """One line: 'load 1.2s, scoring 30.1s (10x), fit 42.0s (1,000 at 23.8/s), ...'."""
        parts = []
        for name, p in self.phases.items():
            extra = f" ({p.times}x)" if p.times > 1 and not p.items else ""
            if p.items:
                extra = f" ({p.items:,} at {p.items / p.seconds:,.1f}/s)" if p.seconds > 0 else f" ({p.items:,})"
            parts.append(f"{name} {p.seconds:,.1f}s{extra}")
        return ", ".join(parts)


_local = threading.local()


def _stack() -> list[Phases]:
    if not hasattr(_local, "runs"):
        _local.runs = []
    return _local.runs


def _wait_for_device() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextmanager
def recording() -> Iterator[Phases]:
    """The phases of one run (the innermost recording of this thread gets them)."""
    phases = Phases()
    _stack().append(phases)
    try:
        yield phases
    finally:
        _stack().pop()


class _Handle:
    items = 0  # set by the timed code: what the phase processed


@contextmanager
def phase(name: str) -> Iterator[_Handle]:
    """Time a phase of the current run (nothing when no run is recording)."""
    handle = _Handle()
    runs = _stack()
    if not runs:
        yield handle
        return
    phases = runs[-1]
    _wait_for_device()
    frame = [name, time.perf_counter(), 0.0]
    phases._open.append(frame)
    try:
        yield handle
    finally:
        _wait_for_device()
        phases._open.pop()
        elapsed = time.perf_counter() - frame[1]
        if phases._open:
            phases._open[-1][2] += elapsed
        entry = phases.phases.setdefault(name, _Phase())
        entry.seconds += elapsed - frame[2]
        entry.times += 1
        entry.items += handle.items
