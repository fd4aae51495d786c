"""`gstrim sweep` and `gstrim report`: the plan, resumption, the table, refusals, and the report's files."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from dataclasses import replace

import pytest
from conftest import interrupt_training_at
from PIL import Image
from test_cli import assert_one_line_error, run

import gstrim.pipelines.run_folder
import gstrim.pipelines.run_kinds
from gstrim.errors import ConfigError, GstrimError
from gstrim.pipelines.inputs import Inputs
from gstrim.pipelines.run_kinds import plan
from gstrim.pipelines.sweep import run_sweep
from gstrim.pipelines.sweep_config import SweepConfig, SweepRunConfigs, parse_variant
from gstrim.prune.strategy import TrimConfig
from gstrim.report.page import write_report
from gstrim.report.table import read_table

SMALL = TrimConfig(steps=2, every=3, finetune=4)
QUICK = dict(fps_views=1, fps_repeats=1)


def test_plan_names_every_run_once():
    config = SweepConfig(removals=[0.5, 0.8], scores=["gradient", "opacity"], one_shot=True, seeds=[0, 2],
                         variants={"restart": {"restart_lr": 1e-4}})
    runs = plan(config, SMALL)
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) == 2 * (1 + 2 * 4)
    assert names[:2] == ["no-prune", "gradient-0.5"] and "gradient-oneshot-0.8-s2" in names
    restart = next(r for r in runs if r.name == "gradient-0.8-restart-s2")
    assert restart.config.restart_lr == 1e-4 and restart.config.seed == 2 and restart.group == "gradient-0.8-restart"
    assert restart.config.target_removal == 0.8 and restart.config.steps == 2
    visible = plan(SweepConfig(removals=[0.8], scores=["gradient"], variants={"vis": {"score": "gradient-visibility"}}),
                   SMALL)[-1]
    assert (visible.name, visible.variant, visible.config.score) == ("gradient-0.8-vis", "vis", "gradient-visibility")
    gammas = plan(SweepConfig(gammas=[0.3], scores=["gradient"], baseline=False), SMALL)
    assert [(r.name, r.config.gamma) for r in gammas] == [("gradient-g0.3", 0.3)]


def test_parse_variant_types_values_and_refuses_unknown_settings():
    assert parse_variant(["fast", "every=2", "restart-lr=1e-4", "stats=refresh"]) == (
        "fast", {"every": 2, "restart_lr": 1e-4, "stats": "refresh"})
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        parse_variant(["x", "learning=3"])
    with pytest.raises(ConfigError, match="needs a int"):
        parse_variant(["x", "every=fast"])
    with pytest.raises(ConfigError):
        parse_variant(["only-a-name"])


def test_sweep_resumes_skips_finished_runs_and_writes_the_table(baseline, tmp_path, monkeypatch):
    data, model = baseline
    out = tmp_path / "sweep"
    config = SweepConfig(removals=[0.5], scores=["gradient", "opacity"], one_shot=True, **QUICK)
    undo = interrupt_training_at(monkeypatch, 5)  # inside the first run (no-prune)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(model, out, config, SweepRunConfigs(SMALL))
    undo()
    assert (out / "runs/no-prune/config.json").is_file() and not (out / "table.json").exists()
    first = run_sweep(model, out, config, SweepRunConfigs(SMALL))
    rows = {r.name: r for r in first.rows}
    assert list(rows) == ["input", "no-prune", "gradient-0.5", "opacity-0.5", "gradient-oneshot-0.5"]
    assert rows["no-prune"].dpsnr == 0 and rows["input"].dpsnr == pytest.approx(rows["input"].psnr -
                                                                                  rows["no-prune"].psnr)
    assert rows["gradient-0.5"].removed == pytest.approx(0.5, abs=0.01) and rows["gradient-0.5"].fps > 0
    assert rows["gradient-0.5"].dpsnr == pytest.approx(rows["gradient-0.5"].psnr - rows["no-prune"].psnr)
    # the interrupted run continued from its checkpoint: it trained as many iterations as the others
    summary = json.loads((out / "runs/no-prune/results.json").read_text())["trim"]
    assert summary["iterations"] == SMALL.steps * SMALL.every + SMALL.finetune

    # a second sweep trims nothing and evaluates the input no more
    monkeypatch.setattr(gstrim.pipelines.run_kinds, "trim_scene", lambda *a, **k: pytest.fail("a finished run ran"))
    monkeypatch.setattr(gstrim.pipelines.run_folder, "evaluate", lambda *a, **k: pytest.fail("input evaluated again"))
    again = run_sweep(model, out, config, SweepRunConfigs(SMALL))
    assert [(r.name, r.psnr) for r in again.rows] == [(r.name, r.psnr) for r in first.rows]

    table, meta = read_table(out)
    assert [r.name for r in table] == list(rows) and meta["trim"]["steps"] == 2
    csv_rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert [r["name"] for r in csv_rows] == list(rows)
    assert float(csv_rows[2]["psnr"]) == pytest.approx(rows["gradient-0.5"].psnr)
    markdown = (out / "table.md").read_text()
    assert markdown.count("\n| ") == len(rows) and "gradient-oneshot-0.5 | one-shot" in markdown


def test_sweep_refuses_other_settings_and_another_scene(baseline, tmp_path):
    data, model = baseline
    out = tmp_path / "sweep"
    config = SweepConfig(removals=[0.5], scores=["opacity"], baseline=False, **QUICK)
    run_sweep(model, out, config, SweepRunConfigs(SMALL))
    with pytest.raises(GstrimError, match="other trim settings") as info:
        run_sweep(model, out, config, SweepRunConfigs(TrimConfig(steps=3, every=3, finetune=4)))
    assert "opacity-0.5" in str(info.value)
    other = tmp_path / "other.ply"
    other.write_bytes((model / "point_cloud/iteration_40/point_cloud.ply").read_bytes())
    with pytest.raises(GstrimError, match="another scene"):
        run_sweep(Inputs(other, data), out, config, SweepRunConfigs(SMALL))
    with pytest.raises(ConfigError, match="per run"):
        run_sweep(model, tmp_path / "x", config, SweepRunConfigs(TrimConfig(seed=3)))


def test_report_writes_figures_and_a_self_contained_page(baseline, tmp_path):
    data, model = baseline
    out = tmp_path / "sweep"
    config = SweepConfig(removals=[0.5, 0.7], scores=["gradient"], one_shot=True, **QUICK)
    run_sweep(model, out, config, SweepRunConfigs(SMALL))
    page = write_report(out, views=1)
    names = {p.name for p in page.parent.iterdir()}
    assert {"psnr_vs_size.png", "fps_vs_size.png", "iterative_vs_one_shot.png", "opacity_histograms.png",
            "renders_view0.png", "error_view0.png", "index.html"} <= names
    for name in names - {"index.html"}:
        with Image.open(page.parent / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 150
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<figure>") == 6 and "gradient-oneshot-0.7" in text
    assert "http" not in text  # nothing to fetch
    for encoded in re.findall(r"base64,([A-Za-z0-9+/=]+)'", text):
        assert base64.b64decode(encoded).startswith(b"\x89PNG")
    assert f"gstrim view {out} --runs input gradient-0.7" in text

    # gstrim view takes the sweep's runs by their table names, with the table's scores
    from gstrim.pipelines.view import collect

    rows = {row["name"]: row for row in json.loads((out / "table.json").read_text())["rows"]}
    shown = collect([out], ["input", "gradient-0.7"])
    assert [s.name for s in shown] == ["input", "gradient-0.7"]
    assert shown[1].metrics["PSNR"] == rows["gradient-0.7"]["psnr"] and len(shown[1].scene) == rows["gradient-0.7"][
        "gaussians"]
    smallest = min(rows.values(), key=lambda r: r["mb"])["name"]
    assert [s.name for s in collect([out], [])] == ["input", smallest]
    with pytest.raises(GstrimError, match="no run 'nope' in this sweep; its runs: input"):
        collect([out], ["nope"])


def test_sweep_and_report_from_the_command_line(baseline, tmp_path, capsys):
    data, model = baseline
    out = tmp_path / "sweep"
    code, stdout, _ = run(capsys, "sweep", model, "-o", out, "--removals", "0.5", "--scores", "opacity",
                          "--steps", "2", "--every", "3", "--finetune", "4", "--fps-views", "1", "--fps-repeats", "1",
                          "--variant", "restart", "restart_lr=1e-4")
    assert code == 0 and "| opacity-0.5-restart | restart | opacity |" in stdout
    code, stdout, _ = run(capsys, "report", out)
    assert code == 0 and (out / "report/index.html").is_file()
    code, _, err = run(capsys, "sweep", model, "-o", tmp_path / "bad", "--removals", "1.5")
    assert_one_line_error(code, err, "removal")
    code, _, err = run(capsys, "report", tmp_path / "bad")
    assert_one_line_error(code, err, "table.json")


def test_sweep_compresses_and_exports_the_methods_trims(baseline, tmp_path):
    from gstrim.compress.stages import CompressConfig
    from gstrim.pipelines.export import ExportConfig

    data, model = baseline
    out = tmp_path / "sweep"
    config = SweepConfig(removals=[0.5], scores=["gradient", "opacity"], compress=True, formats=["spz"], **QUICK)
    configs = SweepRunConfigs(SMALL, CompressConfig(qat_iterations=3, kmeans_steps_sh=2, kmeans_steps_shape=2),
                              ExportConfig(finetune=3))
    rows = {r.name: r for r in run_sweep(model, out, config, configs).rows}
    assert list(rows) == ["input", "input+compress", "no-prune", "gradient-0.5", "opacity-0.5",
                          "gradient-0.5+compress", "gradient-0.5+spz"]
    spz = rows["gradient-0.5+spz"]
    assert spz.kind == "format" and spz.mb * 1e6 == pytest.approx((out / spz.path).stat().st_size)
    assert spz.gaussians == rows["gradient-0.5"].gaussians and spz.fps > 0
    packed = rows["gradient-0.5+compress"]
    assert packed.kind == "compress" and packed.mb < rows["gradient-0.5"].mb and packed.ratio > 2
    assert rows["input+compress"].variant == "input" and rows["input+compress"].mb < rows["input"].mb


def test_every_seed_is_compared_with_its_own_no_prune_model(baseline, tmp_path):
    _, model = baseline
    config = SweepConfig(removals=[0.5], scores=["opacity"], seeds=[0, 1], **QUICK)
    rows = {r.name: r for r in run_sweep(model, tmp_path / "sweep", config, SweepRunConfigs(SMALL)).rows}
    assert rows["no-prune"].psnr != rows["no-prune-s1"].psnr  # the seeds differ, so a wrong reference shows
    for suffix in ("", "-s1"):
        reference = rows[f"no-prune{suffix}"].psnr
        assert rows[f"opacity-0.5{suffix}"].dpsnr == pytest.approx(rows[f"opacity-0.5{suffix}"].psnr - reference,
                                                                   abs=1e-12)
        assert rows[f"no-prune{suffix}"].dpsnr == 0
    assert not list((tmp_path / "sweep" / "claims").glob("*.claim"))  # every claim released




def test_a_new_run_kind_is_one_registration(baseline, tmp_path, monkeypatch):
    """A toy kind (the method's trims copied to .splat) is planned, run, skipped when finished and given its row
    with no edit to the sweep."""
    from gstrim.io.formats import save_scene, written_size
    from gstrim.io.model import load_model
    from gstrim.pipelines import run_kinds
    from gstrim.records import RunSummary

    class CopyKind(run_kinds.RunKind):
        name = verb = "copy"

        def plan_from_run(self, config, run):
            if not run_kinds.is_method_trim(config, run):
                return []
            return [run_kinds.PlannedRun(f"{run.name}+copy", self.name, run.variant, run.config,
                                         f"{run.group}+copy", run.name)]

        def folder(self, run, root):
            return root / "runs" / run.source / "copy"

        def path(self, run, root):
            return run.folder(root) / "scene.splat"

        def execute(self, sweep, run, control, known):
            trim = sweep.source_of(run)
            scene = load_model(trim).scene
            save_scene(self.path(run, sweep.root), scene)
            trimmed = RunSummary.read(trim, "trim")
            summary = RunSummary(self.verb, len(scene), len(scene), scene.sh_degree, 0, 0.0, output=trimmed.output,
                                 details={"mb": written_size(self.path(run, sweep.root)) / 1e6})
            summary.write(run.folder(sweep.root))
            return summary

        def settings(self, sweep, run, recorded):
            return {}, {}

    monkeypatch.setattr(run_kinds, "RUN_KINDS", dict(run_kinds.RUN_KINDS))
    run_kinds.register_run_kind(CopyKind())
    _, model = baseline
    out = tmp_path / "sweep"
    config = SweepConfig(removals=[0.5], scores=["opacity"], baseline=False, **QUICK)
    rows = {r.name: r for r in run_sweep(model, out, config, SweepRunConfigs(SMALL)).rows}
    assert list(rows) == ["input", "opacity-0.5", "opacity-0.5+copy"]
    copy = rows["opacity-0.5+copy"]
    assert copy.kind == "copy" and copy.path == "runs/opacity-0.5/copy/scene.splat" and copy.fps > 0
    assert copy.gaussians == rows["opacity-0.5"].gaussians and copy.psnr == rows["opacity-0.5"].psnr
    assert copy.mb * 1e6 == pytest.approx((out / copy.path).stat().st_size)
    monkeypatch.setattr(CopyKind, "execute", lambda *a: pytest.fail("a finished run ran again"))
    assert [r.name for r in run_sweep(model, out, config, SweepRunConfigs(SMALL)).rows] == list(rows)


def test_a_sweep_adds_the_inputs_levels_of_detail(baseline, tmp_path, monkeypatch):
    from gstrim.io.streamed_sog import level_counts
    from gstrim.pipelines.export import ExportConfig

    _, model = baseline
    out = tmp_path / "sweep"
    config = SweepConfig(removals=[0.5], scores=["opacity"], baseline=False, lod=True, **QUICK)
    configs = SweepRunConfigs(SMALL, export=ExportConfig(finetune=2))
    rows = {r.name: r for r in run_sweep(model, out, config, configs).rows}
    assert list(rows) == ["input", "opacity-0.5", "lod-1", "lod-2", "lod-3", "lod-4"]
    n = rows["input"].gaussians
    counts = [rows[f"lod-{k}"].gaussians for k in range(1, 5)]
    assert counts == [round(n * f) for f in (0.5, 0.25, 0.125, 0.0625)]
    assert level_counts(out / "runs" / "lod" / "lod-meta.json") == [n, *counts]
    assert all(rows[f"lod-{k}"].kind == "lod" and rows[f"lod-{k}"].fps > 0 for k in range(1, 5))
    write_report(out)  # the figures take a kind they have not met: one line for the chain
    monkeypatch.setattr(gstrim.pipelines.run_kinds.lod, "make_levels", lambda *a, **k: pytest.fail("made again"))
    assert [r.name for r in run_sweep(model, out, config, configs).rows] == list(rows)
    with pytest.raises(GstrimError, match="other lod settings"):  # the chain is never reused with other settings
        run_sweep(model, out, replace(config, removals=[0.3]),
                  SweepRunConfigs(TrimConfig(steps=3, every=3, finetune=4), export=ExportConfig(finetune=2)))
