"""Executors: a pool whose worker died is replaced once, and the late failures of the old pool never touch the
new one (they cancelled a job already resubmitted to it)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
import time
import types
from functools import partial

import pytest

from gstrim.errors import GstrimError
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


class _FakeRay(types.ModuleType):
    """Ray's start-up as the executor sees it; `get` without a timeout is a node that never answers."""

    class exceptions:  # noqa: N801 (ray.exceptions)
        class GetTimeoutError(Exception):
            pass

    def __init__(self, nodes):
        super().__init__("ray")
        self._nodes, self.initialized, self.shutdowns = nodes, False, 0

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.initialized = True

    def shutdown(self):
        self.initialized, self.shutdowns = False, self.shutdowns + 1

    def nodes(self):
        if isinstance(self._nodes, Exception):
            raise self._nodes
        return self._nodes

    def cluster_resources(self):
        return {"CPU": 2}

    def remote(self, fn):
        task = types.SimpleNamespace(remote=lambda *a, **k: "ref")
        task.options = lambda **kw: task
        return task

    def get(self, ref, timeout=None):
        if timeout is None:
            raise AssertionError("ray.get without a timeout: a dead node would hang the batch here")
        raise self.exceptions.GetTimeoutError()


def _with_fake_ray(monkeypatch, nodes) -> _FakeRay:
    fake = _FakeRay(nodes)
    strategies = types.ModuleType("ray.util.scheduling_strategies")
    strategies.NodeAffinitySchedulingStrategy = lambda node, soft: None
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray.util", types.ModuleType("ray.util"))
    monkeypatch.setitem(sys.modules, "ray.util.scheduling_strategies", strategies)
    return fake


def test_ray_start_up_failures_shut_down_what_they_started(monkeypatch, tmp_path):
    from gstrim.pipelines.ray_executor import RayExecutor

    fake = _with_fake_ray(monkeypatch, RuntimeError("the GCS went away"))
    with pytest.raises(RuntimeError, match="GCS went away"):
        RayExecutor(None, 1, [tmp_path / "out"])
    assert fake.shutdowns == 1 and not fake.initialized


def test_a_silent_ray_node_is_a_timeout_not_a_hang(monkeypatch, tmp_path):
    from gstrim.pipelines.ray_executor import RayExecutor

    node = {"NodeID": "abcdef0123", "Alive": True, "Resources": {"CPU": 2}}
    fake = _with_fake_ray(monkeypatch, [node])
    with pytest.raises(GstrimError, match="Ray node abcdef01 did not answer the shared-folder check"):
        RayExecutor(None, 1, [tmp_path / "out"])
    assert fake.shutdowns == 1 and not (tmp_path / "out").exists()
