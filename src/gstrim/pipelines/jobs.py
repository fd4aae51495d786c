"""A job: one unit of a sweep or batch (a run, or the input's evaluation) as any executor runs it, in this
process, a worker process or on a cluster node, and the `Report` it comes back with."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from gstrim import progress, resources
from gstrim.errors import GstrimError
from gstrim.threads import set_threads


@dataclass
class Report:
    """How one job ended: done (here), found (done before or elsewhere), held (another driver's worker has it:
    look again later) or failed (`error`, one line). Where and how long it ran (`host`: resources.where())."""
    key: str
    status: str
    error: str = ""
    wall_s: float = 0.0
    host: dict = field(default_factory=dict)


@dataclass
class Job:
    key: str  # unique among the driver's jobs, e.g. "<scene>/<run>"
    work: Callable[[], str]  # picklable; runs the job and returns its status (`Report`), raises on failure
    after: tuple[str, ...] = ()  # keys of the jobs that must be done first
    gpu: bool | None = None  # renders on CUDA: a Ray task asks for one GPU (None: where the cluster has GPUs)


def first_failure(reports) -> Report | None:
    """The report of a job that failed of itself (not one left out because a job before it failed), if any."""
    failed = [r for r in reports if r.status == "failed"]
    return min(failed, key=lambda r: r.error.startswith("not run:")) if failed else None


def perform(job: Job, threads: int | None = None, quiet: bool = False) -> Report:
    """Run `job` here with `threads` threads; a failure becomes a failed report with its one-line message."""
    if threads is not None:
        set_threads(threads)
    if quiet:
        progress.set_enabled(False)
    start = time.monotonic()
    try:
        status = job.work()
        error = ""
    except GstrimError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # a bug in one run must not take the other scenes down; its trace goes to the log
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        progress.log(f"{job.key}: " + "".join(traceback.format_exception(exc)).rstrip())
    return Report(job.key, status, error, time.monotonic() - start, resources.where())
