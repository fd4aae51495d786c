"""Executors: a pool whose worker died is replaced once, and the late failures of the old pool never touch the
new one (they cancelled a job already resubmitted to it)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from functools import partial

from gstrim.pipelines.executors import LocalExecutor
from gstrim.pipelines.jobs import Job


def test_a_late_failure_of_a_replaced_pool_leaves_the_new_pool_alone():
    executor = LocalExecutor(jobs=2, threads=1)
    try:
        dying = [executor.submit(Job(f"dies-{i}", partial(os._exit, 1))) for i in range(2)]
        cf.wait(dying, timeout=120)
        assert all(isinstance(f.exception(), cf.process.BrokenProcessPool) for f in dying)
        assert executor.lost(dying[0], dying[0].exception())  # the pool is replaced ...
        # the job runs again, with more behind it than the new pool has started (those are cancellable)
        resubmitted = [executor.submit(Job(f"run-{i}", partial(time.sleep, 0.2))) for i in range(6)]
        assert executor.lost(dying[1], dying[1].exception())  # the old pool's second failure, reported late
        cf.wait(resubmitted, timeout=120)
        assert not any(f.cancelled() for f in resubmitted)  # before the fix: cancelled with the new pool
        assert [f.result().key for f in resubmitted] == [f"run-{i}" for i in range(6)]
    finally:
        executor.close()
