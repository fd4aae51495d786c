"""`gstrim batch` and the executors: one table across scenes, a bad scene as a row, the local executor with
several jobs and the Ray executor on a local cluster giving the same table, a killed worker's run resumed,
two drivers on one folder running every run once, and the driver's job graph."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_cli import run

import gstrim.pipelines.executors as executors
from gstrim.pipelines.batch import run_batch, scene_names, scenes_with_data
from gstrim.pipelines.executors import ExecutorConfig, Job, LocalExecutor, drive
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.sweep_config import SweepConfig, SweepRunConfigs
from gstrim.prune.strategy import TrimConfig
from gstrim.report.table import TABLE_NAME

TRIM = TrimConfig(steps=2, every=3, finetune=8)
CONFIG = SweepConfig(removals=[0.5], scores=["gradient"], fps_views=1, fps_repeats=1)
RUNS_PER_SCENE = 3  # the input's evaluation, no-prune, gradient-0.5


@pytest.fixture
def scenes(baseline, tmp_path) -> list[Inputs]:
    """Two scenes: the baseline's model folder (its recorded dataset) and a bare copy of its .ply with --data."""
    data, model = baseline
    bare = tmp_path / "bare.ply"
    bare.write_bytes((model / "point_cloud/iteration_40/point_cloud.ply").read_bytes())
    return scenes_with_data([str(model), str(bare)], ["-", str(data)], {})


def batch(scenes, out, executor: ExecutorConfig, control: RunControl | None = None):
    return run_batch(scenes, out, CONFIG, SweepRunConfigs(TRIM), control or RunControl(checkpoint_every=2), executor)


def figures(root: Path) -> list[tuple]:
    """What must not depend on where the runs ran: every row's scene, run and measurements."""
    record = json.loads((root / f"{TABLE_NAME}.json").read_text())
    return [(r["scene"], r["name"], r["gaussians"], r["psnr"], r["ssim"], r["lpips"]) for r in record["rows"]]


@pytest.fixture(scope="module")
def local_table(baseline, tmp_path_factory):
    """The batch of the two scenes with the local executor, one thread: the table every executor must give."""
    data, model = baseline
    root = tmp_path_factory.mktemp("local")
    bare = root / "bare.ply"
    bare.write_bytes((model / "point_cloud/iteration_40/point_cloud.ply").read_bytes())
    result = batch(scenes_with_data([str(model), str(bare)], ["-", str(data)], {}), root / "batch",
                   ExecutorConfig(threads=1))
    assert not result.errors
    return figures(root / "batch")


def test_scene_names_are_folder_names_or_stems_and_unique(tmp_path):
    (tmp_path / "a" / "model").mkdir(parents=True)
    (tmp_path / "b" / "model").mkdir(parents=True)
    paths = [tmp_path / "a/model", tmp_path / "b/model", tmp_path / "chair.ply", tmp_path / "x/chair.ply"]
    assert scene_names(paths) == ["model", "b-model", "chair", "x-chair"]


def test_batch_table_has_every_scene_the_means_and_a_bad_scene_as_a_row(baseline, scenes, local_table, tmp_path,
                                                                       capsys):
    data, model = baseline
    bad = tmp_path / "broken.ply"
    bad.write_text("not a scene")
    out = tmp_path / "batch"
    code, stdout, _ = run(capsys, "--threads", "1", "batch", model, scenes[1].scene, bad, tmp_path / "missing",
                          "--data", "-", data, data, data, "-o", out, "--removals", "0.5", "--scores", "gradient",
                          "--steps", 2, "--every", 3, "--finetune", 8, "--fps-views", 1, "--fps-repeats", 1,
                          "--checkpoint-every", 2)
    assert code == 1  # some scenes failed; the others are done
    record = json.loads((out / "table.json").read_text())
    assert record["scenes"] == ["model", "bare", "broken", "missing"]
    assert "not a PLY file" in record["errors"]["broken"] and "no such scene" in record["errors"]["missing"]
    assert figures(out) == local_table  # the bad scenes changed nothing for the good ones
    rows = record["rows"]
    assert {r["scene"] for r in rows} == {"model", "bare"} and all(r["path"].startswith(r["scene"]) for r in rows)
    mean = record["means"]["gradient-0.5"]
    trims = [r for r in rows if r["name"] == "gradient-0.5"]
    assert mean["scenes"] == 2 and mean["psnr"] == pytest.approx(sum(r["psnr"] for r in trims) / 2)
    assert all(r["fps"] > 0 for r in rows) and "FPS measured after the runs" in (out / "table.md").read_text()
    csv_lines = (out / "table.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(rows) + 2 and csv_lines[-1].startswith("missing,")
    assert "## Scenes that failed" in stdout and "| broken |" in stdout
    # each scene is an ordinary sweep folder, and its runs record where they ran
    summary = json.loads((out / "bare/runs/gradient-0.5/results.json").read_text())["trim"]
    assert summary["host"]["pid"] == os.getpid() and summary["host"]["node"] is None
    # run again: nothing runs twice, the table is the same
    again = batch(scenes, out, ExecutorConfig(threads=1))
    assert figures(out) == local_table and not again.errors  # the table of the scenes asked for now


def test_batch_refuses_a_folder_that_is_not_a_batch_and_bad_executor_settings(scenes, tmp_path):
    from gstrim.errors import ConfigError, GstrimError

    (tmp_path / "other").mkdir()
    (tmp_path / "other/file.txt").write_text("x")
    with pytest.raises(GstrimError, match="holds no batch"):
        batch(scenes, tmp_path / "other", ExecutorConfig())
    with pytest.raises(ConfigError, match="jobs"):
        batch(scenes, tmp_path / "b", ExecutorConfig(jobs=0))
    with pytest.raises(ConfigError, match="ray_address"):
        batch(scenes, tmp_path / "b", ExecutorConfig(ray_address="auto"))
    with pytest.raises(ConfigError, match="data"):
        scenes_with_data(["a", "b", "c"], ["x", "y"], {})


def test_local_executor_with_two_jobs_gives_the_same_table(scenes, local_table, tmp_path):
    batch(scenes, tmp_path / "batch", ExecutorConfig(jobs=2, threads=2))  # one thread per worker process
    assert figures(tmp_path / "batch") == local_table
    summaries = (tmp_path / "batch").glob("*/runs/*/results.json")
    hosts = {json.loads(p.read_text())["trim"]["host"]["pid"] for p in summaries}
    assert os.getpid() not in hosts  # ran in the worker processes


# ---- the driver's job graph --------------------------------------------------------------------------------


@dataclass
class Step:
    """A job for the driver tests: fails, or is held by another driver a number of times, then is done."""
    name: str
    log: str
    held: int = 0
    fail: bool = False

    def __call__(self) -> str:
        path = Path(self.log)
        tries = path.read_text().count(self.name + "\n") if path.exists() else 0
        with path.open("a") as f:
            f.write(self.name + "\n")
        if self.fail:
            raise ValueError("boom")
        return "held" if tries < self.held else "done"


def test_drive_runs_jobs_after_their_prerequisites_waits_for_held_ones_and_skips_after_a_failure(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setattr(executors, "POLL_S", 0.01)
    log = str(tmp_path / "log")
    jobs = [Job("a", Step("a", log)), Job("b", Step("b", log, held=2), ("a",)), Job("c", Step("c", log), ("b",)),
            Job("bad", Step("bad", log, fail=True)), Job("after-bad", Step("after-bad", log), ("bad",))]
    reports = drive(jobs, LocalExecutor(1, 1))
    assert {k: r.status for k, r in reports.items()} == {"a": "done", "b": "done", "c": "done", "bad": "failed",
                                                         "after-bad": "failed"}
    assert reports["bad"].error == "ValueError: boom" and reports["after-bad"].error == "not run: bad failed"
    order = Path(log).read_text().split()
    assert order.count("b") == 3 and order.index("c") > len(order) - 2 and "after-bad" not in order


# ---- two drivers on one folder -------------------------------------------------------------------------------


def test_two_drivers_on_one_folder_run_every_run_exactly_once(scenes, local_table, tmp_path):
    out = tmp_path / "batch"
    argv = [sys.executable, "-m", "gstrim.cli", "--threads", "1", "batch", *[str(s.scene) for s in scenes],
            "--data", "-", str(scenes[1].data), "-o", str(out), "--removals", "0.5", "--scores", "gradient",
            "--steps", "2", "--every", "3", "--finetune", "8", "--fps-views", "1", "--fps-repeats", "1",
            "--checkpoint-every", "2"]
    env = {**os.environ, "GSTRIM_POLL_S": "0.5", "GSTRIM_PROGRESS_EVERY": "0"}
    first, second = (subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                     for _ in range(2))  # started together: they race for the folder and for every run
    logs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, logs
    stderr = "".join(err for _, err in logs)
    started = [line for line in stderr.splitlines() if "(starting)" in line or "test-view evaluation" in line]
    assert len(started) == 2 * RUNS_PER_SCENE, stderr  # every run once, by one of the two
    assert "(resuming)" not in stderr
    assert figures(out) == local_table


# ---- Ray -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_executor_gives_the_same_table_and_records_its_node(ray_cluster, scenes, local_table, tmp_path):
    batch(scenes, tmp_path / "batch", ExecutorConfig(executor="ray", threads=1))
    assert figures(tmp_path / "batch") == local_table
    node = ray_cluster.get_runtime_context().get_node_id()
    summaries = list((tmp_path / "batch").glob("*/runs/*/results.json"))
    assert len(summaries) == 4 and all(json.loads(p.read_text())["trim"]["host"]["node"] == node for p in summaries)
    record = json.loads((tmp_path / "batch/table.json").read_text())
    assert all(r["host"].endswith("/" + node[:8]) for r in record["rows"] if r["kind"] != "input")


def test_ray_worker_killed_mid_run_is_retried_and_resumes(ray_cluster, scenes, local_table, tmp_path):
    out = tmp_path / "batch"
    killed: list[tuple[str, int]] = []
    stop = threading.Event()

    def kill_a_worker() -> None:
        """SIGKILL the worker that holds the first run with a checkpoint (its pid is in the run's claim)."""
        while not stop.is_set() and not killed:
            for checkpoint in out.glob("*/runs/*/checkpoints/chkpnt*.pt"):
                run = checkpoint.parents[1]
                claim = run.parents[1] / "claims" / f"{run.name}.claim"
                try:
                    pid = json.loads(claim.read_text())["pid"]
                except (OSError, ValueError, KeyError):
                    continue
                os.kill(pid, signal.SIGKILL)
                killed.append((str(run.relative_to(out)), pid))
                break
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_a_worker)
    watcher.start()
    try:
        result = batch(scenes, out, ExecutorConfig(executor="ray", threads=1))
    finally:
        stop.set()
        watcher.join()
    assert killed and not result.errors
    run, pid = killed[0]
    summary = json.loads((out / run / "results.json").read_text())["trim"]
    assert summary["host"]["pid"] != pid  # finished by the retried task, in another worker
    assert figures(out) == local_table  # the resumed run is bit-identical


def test_ray_refuses_a_node_that_cannot_see_the_folder(tmp_path):
    from gstrim.pipelines.ray_executor import missing_on_node

    probe = tmp_path / "probe"
    probe.write_text("token")
    assert missing_on_node([str(tmp_path)], str(probe), "token")[1] == []
    # another node whose path holds another folder (no shared file system) reads another probe, or none
    assert missing_on_node([str(tmp_path / "x")], str(probe), "other")[1] == [str(tmp_path), str(tmp_path / "x")]


# ---- photo-free scenes ---------------------------------------------------------------------------------------


def test_a_bare_scene_without_photos_is_swept_photo_free_against_its_own_renders(baseline, tmp_path):
    import math

    from gstrim.compress.stages import CompressConfig
    from gstrim.data.virtual import ViewConfig, virtual_dataset
    from gstrim.io import load_scene
    from gstrim.pipelines.inputs import open_inputs

    data, model = baseline
    bare = tmp_path / "bare.ply"
    bare.write_bytes((model / "point_cloud/iteration_40/point_cloud.ply").read_bytes())
    views = ViewConfig(views=16, resolution=32)
    config = SweepConfig(removals=[0.5], scores=["gradient"], compress=True, fps_views=1, fps_repeats=1)
    configs = SweepRunConfigs(TRIM, CompressConfig(qat_iterations=3, kmeans_steps_sh=2, kmeans_steps_shape=2))
    result = run_batch([Inputs(bare, views=views), model], tmp_path / "batch", config, configs,
                       RunControl(checkpoint_every=2), ExecutorConfig(threads=1))
    assert not result.errors and not (tmp_path / "batch/bare/input").exists()  # nothing to evaluate photo-free
    rows = {r.name: r for r in result.rows if r.scene == "bare"}
    assert list(rows) == ["input", "input+compress", "no-prune", "gradient-0.5", "gradient-0.5+compress"]
    assert rows["input"].psnr == math.inf  # the references are its renders
    assert all(math.isfinite(r.psnr) and r.psnr > 15 for name, r in rows.items() if name != "input")
    assert rows["gradient-0.5"].dpsnr == pytest.approx(rows["gradient-0.5"].psnr - rows["no-prune"].psnr)
    trim = json.loads((tmp_path / "batch/bare/runs/gradient-0.5/results.json").read_text())["trim"]
    assert trim["details"]["mode"] == "photo-free" and "ours_14_virtual" in json.loads(
        (tmp_path / "batch/bare/runs/gradient-0.5/results.json").read_text())
    # the trim's compressed file learns from and is scored against the input's renders, not its trim's
    folder = tmp_path / "batch/bare/runs/gradient-0.5/compressed"
    recorded = json.loads((folder / "config.json").read_text())["data"]
    assert (folder / recorded["teacher"]).resolve() == bare.resolve()
    opened = open_inputs(folder, "compress", Inputs(), resume=True)
    targets = opened.dataset().test
    expected, _ = virtual_dataset(load_scene(bare), views, bare)
    assert len(targets) == len(expected.test)
    torch.testing.assert_close(targets[0].image, expected.test[0].image, rtol=0, atol=0)
    # a report of the photo-free sweep shows the input's renders as the ground truth
    from gstrim.report.page import write_report

    assert write_report(tmp_path / "batch/bare").is_file()


def test_ray_refuses_an_address_where_nothing_listens_at_once(tmp_path):
    from gstrim.errors import GstrimError
    from gstrim.pipelines.ray_executor import reachable

    reachable(None)  # a cluster of this machine: nothing to reach
    reachable("auto")  # Ray finds the one started here, or says there is none
    with pytest.raises(GstrimError, match="nothing answers there"):
        reachable("127.0.0.1:1")
