"""Executors: where a sweep's or a batch's runs execute. The driver (`drive`) hands every job whose
prerequisites finished to an executor and collects one `Report` per job; the jobs themselves claim their run
in the shared folder (`claims`), so that several drivers, workers and machines never run one run twice.

* `local`: on this machine, `jobs` at once (one: in the driver's own process; more: in worker processes with
  the threads split between them; a worker that dies is replaced and its run resumed).
* `ray`: each job is a Ray task that declares its CPUs (its threads) and, on CUDA, one GPU, so that Ray
  places it on a node of the cluster (`pipelines.ray_executor`; the optional extra `gstrim[ray]`).

A job (`pipelines.jobs`) is picklable: it runs wherever the executor puts it.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gstrim import progress
from gstrim.errors import ConfigError
from gstrim.options import option
from gstrim.pipelines.jobs import Job, Report, perform

# how often a driver looks again at runs that another driver or worker holds
POLL_S = float(os.environ.get("GSTRIM_POLL_S", "10"))
MAX_TRIES = 4  # a job whose worker died is run again (resumed) up to this many times in all


@dataclass
class ExecutorConfig:
    executor: str = option("local", "where the runs execute: local (this machine) or ray (a Ray cluster; "
                           "pip install 'gstrim[ray]')", choices=lambda: list(EXECUTORS))
    jobs: int = option(1, "runs at once with the local executor; --threads is split between them")
    ray_address: str | None = option(None, "the Ray cluster to join: auto (the one started on this machine with "
                                     "`ray start`) or HOST:PORT; default: a cluster of this machine alone")
    # threads of each run: with local, --threads (default: every core) split over --jobs; with ray, --threads
    # (default 1), which is also the CPUs each Ray task declares
    threads: int | None = None

    def validate(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; use one of {', '.join(EXECUTORS)}", "executor")
        if self.jobs < 1:
            raise ConfigError(f"{{jobs}} must be at least 1, got {self.jobs}", "jobs")
        if self.executor != "ray" and self.ray_address is not None:
            raise ConfigError("{ray_address} needs {executor} ray", "ray_address", "executor")
        if self.executor == "ray" and self.jobs != 1:
            raise ConfigError("{jobs} is for the local executor; Ray runs as many runs as the cluster's CPUs "
                              "(and GPUs) hold", "jobs")


class LocalExecutor:
    """`jobs` runs at once on this machine: one in the driver's process, more in a pool of worker processes."""

    def __init__(self, jobs: int = 1, threads: int | None = None):
        self.jobs = jobs
        total = threads or os.cpu_count() or 1
        self.threads = threads if jobs == 1 else max(1, total // jobs)
        self.pool: cf.ProcessPoolExecutor | None = None
        if jobs > 1:
            progress.log(f"local executor: {jobs} runs at once, {self.threads} threads each")

    @property
    def inline(self) -> bool:
        return self.jobs == 1

    def room(self, running: int) -> bool:
        return running < self.jobs

    def submit(self, job: Job) -> cf.Future:
        if self.inline:
            future = cf.Future()
            future.set_result(perform(job, self.threads))
            return future
        if self.pool is None:
            # spawn: a fresh interpreter per worker, not a fork of a driver whose torch threads are running
            self.pool = cf.ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"))
        future = self.pool.submit(perform, job, self.threads, True)
        future.pool = self.pool  # a failure reported late must only ever touch the pool it came from
        return future

    def lost(self, future: cf.Future, exc: BaseException) -> bool:
        """Whether a job failed because its worker died (so it may run again): its pool is then replaced, once;
        the late failures of a pool already replaced leave the new pool and its jobs alone."""
        if not isinstance(exc, cf.process.BrokenProcessPool):
            return False
        if self.pool is not None and getattr(future, "pool", None) is self.pool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        return True

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


class Executor(Protocol):
    """What the driver needs of an executor."""
    inline: bool  # runs jobs in the driver's own process (so the driver shows no bar of its own)

    def room(self, running: int) -> bool: ...  # whether another job may start now
    def submit(self, job: Job) -> cf.Future: ...  # the future's result is the job's Report
    def lost(self, future: cf.Future, exc: BaseException) -> bool: ...  # its worker died: run the job again
    def close(self) -> None: ...


# name -> factory(config, paths the workers must see): one registration adds an executor (--executor NAME)
EXECUTORS: dict[str, Callable[[ExecutorConfig, list], Executor]] = {}


def register_executor(name: str, make: Callable[[ExecutorConfig, list], Executor]) -> None:
    EXECUTORS[name] = make


def _ray(config: ExecutorConfig, paths: list) -> Executor:
    from gstrim.pipelines.ray_executor import RayExecutor  # Ray is an optional extra

    return RayExecutor(config.ray_address, config.threads or 1, paths)


register_executor("local", lambda config, paths: LocalExecutor(config.jobs, config.threads))
register_executor("ray", _ray)


def make_executor(config: ExecutorConfig, paths: list) -> Executor:
    """The executor `config` asks for; it may first check that its workers see `paths` (the output first)."""
    config.validate()
    return EXECUTORS[config.executor](config, paths)


def drive(jobs: list[Job], executor: Executor, describe: Callable[[Report], str] | None = None) -> dict[str, Report]:
    """Run every job once its prerequisites are done, as many at once as the executor has room for; a job
    another driver holds is looked at again every POLL_S seconds. Returns a report per job (a job whose
    prerequisite failed fails too, saying which)."""
    reports: dict[str, Report] = {}
    waiting = {job.key: job for job in jobs}
    unknown = {d for job in jobs for d in job.after} - set(waiting)
    if unknown:
        raise ValueError(f"jobs wait for jobs that are not given: {', '.join(sorted(unknown))}")
    not_before: dict[str, float] = {}
    tries: dict[str, int] = {}
    running: dict[cf.Future, Job] = {}
    # runs in this process show their own bars, and only one bar can show at a time
    bar = progress.task("runs", len(jobs)) if not executor.inline else _no_bar()
    start = time.monotonic()
    try:
        with bar as advance:

            def finish(report: Report) -> None:
                reports[report.key] = report
                advance()
                line = describe(report) if describe else f"{report.key}: {report.status}"
                spent, ran = time.monotonic() - start, sum(r.status == "done" for r in reports.values())
                left = len(jobs) - len(reports)
                # at the pace of the runs done here so far (runs found done cost nothing)
                eta = f", about {progress.duration(spent / ran * left)} left" if ran and left else ""
                progress.log(f"[{len(reports)}/{len(jobs)} {progress.duration(spent)}{eta}] {line}")

            while waiting or running:
                now = time.monotonic()
                for key, job in list(waiting.items()):
                    failed = next((d for d in job.after if d in reports and reports[d].status == "failed"), None)
                    if failed is not None:
                        del waiting[key]
                        finish(Report(key, "failed", f"not run: {failed} failed"))
                    elif all(d in reports for d in job.after) and not_before.get(key, 0) <= now \
                            and executor.room(len(running)):
                        del waiting[key]
                        tries[key] = tries.get(key, 0) + 1
                        running[executor.submit(job)] = job
                if not running:
                    if waiting:
                        time.sleep(max(0.0, min(not_before.get(k, now) for k in waiting) - now) or 0.05)
                    continue
                finished, _ = cf.wait(list(running), timeout=POLL_S, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    job = running.pop(future)
                    try:
                        report = future.result()
                    except Exception as exc:
                        if executor.lost(future, exc) and tries[job.key] < MAX_TRIES:
                            progress.log(f"{job.key}: its worker died; running it again (it resumes)")
                            waiting[job.key] = job
                            continue
                        report = Report(job.key, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
                    if report.status == "held":
                        waiting[job.key] = job
                        not_before[job.key] = time.monotonic() + POLL_S
                    else:
                        finish(report)
    finally:
        executor.close()  # also on Ctrl-C: the workers go, their claims go stale, the runs resume next time
    return reports


class _no_bar:
    def __enter__(self):
        return lambda n=1, **fields: None

    def __exit__(self, *exc):
        return False
