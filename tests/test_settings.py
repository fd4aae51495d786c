"""Each stage its own settings, every setting checked before the first expensive step, and nothing reused
silently: a run, a sweep row or a budget search made with other settings is a one-line error naming them."""

from __future__ import annotations

import json
import shutil

import pytest
from test_cli import assert_one_line_error, run

from gstrim.cli import build_parser
from gstrim.cli.experiment_commands import sweep_settings_from_args
from gstrim.cli.run_commands import export_config_from_args
from gstrim.compress.stages import CompressConfig
from gstrim.errors import GstrimError
from gstrim.io.spz import SpzOptions
from gstrim.pipelines.export import ExportConfig, export_model
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.sweep import run_sweep
from gstrim.pipelines.sweep_config import SweepConfig, SweepRunConfigs
from gstrim.prune.strategy import TrimConfig


def test_the_trims_finetune_never_reaches_the_export():
    """`--finetune 20 --format spz` recorded "finetune": 20 for the .spz fine-tuning, the trim's own setting."""
    args = build_parser().parse_args(["trim", "s.ply", "-o", "o", "--finetune", "20", "--format", "spz"])
    assert export_config_from_args(args, beside_trim=True).finetune is None  # the export's own default
    args = build_parser().parse_args(["trim", "s.ply", "-o", "o", "--finetune", "20", "--format", "spz",
                                      "--format-finetune", "7"])
    assert export_config_from_args(args, beside_trim=True).finetune == 7
    for verb in ("sweep", "batch"):
        args = build_parser().parse_args([verb, "m", "-o", "o", "--finetune", "20", "--formats", "spz"])
        _, configs, _, _ = sweep_settings_from_args(args)
        assert configs.trim.finetune == 20 and configs.export.finetune is None
    assert export_config_from_args(build_parser().parse_args(["export", "m", "-o", "o.spz", "--finetune", "9"])
                                   ).finetune == 9
    assert "--format-finetune" in build_parser()._subparsers._group_actions[0].choices["trim"].format_help()


@pytest.mark.parametrize("flags, named", [
    (["--compress", "--keep-sh", "2"], "--keep-sh"),
    (["--compress", "--max-loss", "0.3", "--no-eval"], "--no-eval"),
    (["--format", "spz", "--spz-sh1-bits", "9"], "--spz-sh1-bits"),
    (["--format", "spz", "--max-loss", "0.3", "--no-eval"], "--no-eval"),
    (["--format", "splat", "--max-loss", "0.3"], "no writer options to search"),
])
def test_trim_pipelines_check_every_stage_before_trimming(baseline, tmp_path, capsys, flags, named):
    _, model = baseline
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "t", *flags)
    assert_one_line_error(code, err, named)
    assert not (tmp_path / "t").exists()  # nothing trimmed first


def test_a_budget_needs_photos_before_a_photo_free_trim(baseline, tmp_path, capsys):
    _, model = baseline
    bare = tmp_path / "bare.ply"
    shutil.copy(model / "point_cloud" / "iteration_40" / "point_cloud.ply", bare)
    for flags in (["--compress", "--max-loss", "0.3"], ["--format", "spz", "--max-loss", "0.3"]):
        code, _, err = run(capsys, "trim", bare, "-o", tmp_path / "t", *flags)
        assert_one_line_error(code, err, "--max-loss", "photo-free")
        assert not (tmp_path / "t").exists()


def test_sweep_checks_compress_and_format_settings_up_front(baseline, tmp_path, capsys):
    _, model = baseline
    for flags, named in ((["--compress", "--keep-sh", "2"], "--keep-sh"),
                         (["--formats", "spz", "--spz-sh-rest-bits", "0"], "--spz-sh-rest-bits")):
        code, _, err = run(capsys, "sweep", model, "-o", tmp_path / "s", "--removals", "0.5", *flags)
        assert_one_line_error(code, err, named)
        assert not (tmp_path / "s" / "runs").exists()


def test_sweep_refuses_compress_and_format_rows_made_with_other_settings(baseline, tmp_path):
    """A sweep run again with another --codebook-sh or --spz-* counted the old rows as found."""
    _, model = baseline
    out = tmp_path / "sweep"
    config = SweepConfig(removals=[0.5], scores=["opacity"], compress=True, formats=["spz"], fps_views=1,
                         fps_repeats=1)
    trim = TrimConfig(steps=2, every=3, finetune=4)
    compress = CompressConfig(qat_iterations=2, kmeans_steps_sh=1, kmeans_steps_shape=1, codebook_sh=64)
    export = ExportConfig(finetune=2)
    run_sweep(model, out, config, SweepRunConfigs(trim, compress, export))
    rows = run_sweep(model, out, config, SweepRunConfigs(trim, compress, export)).rows  # same settings: found
    assert {r.name for r in rows} >= {"opacity-0.5+compress", "opacity-0.5+spz"}
    with pytest.raises(GstrimError, match=r"other compress settings than the sweep asks for now \(codebook_sh\)"):
        run_sweep(model, out, config, SweepRunConfigs(trim, CompressConfig(**{**compress.__dict__,
                                                                              "codebook_sh": 32}), export))
    other = ExportConfig(finetune=2, formats={"spz": SpzOptions(sh1_bits=6)})
    with pytest.raises(GstrimError, match=r"other format settings .*\(options.sh1_bits\)"):
        run_sweep(model, out, config, SweepRunConfigs(trim, compress, other))
    with pytest.raises(GstrimError, match=r"other format settings .*\(finetune\)"):
        run_sweep(model, out, config, SweepRunConfigs(trim, compress, ExportConfig(finetune=3)))


def test_export_budget_search_is_not_reused_silently(baseline, tmp_path):
    """OUT.finetune/search/search.json from an earlier search (of another input) was taken up without --resume."""
    data, model = baseline
    out = tmp_path / "scene.spz"
    record = tmp_path / "scene.spz.finetune" / "search" / "search.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"budget": 0.3, "input_psnr": 99.0, "order": [], "points": [],
                                  "settings": {"input": "/elsewhere/other.ply"}}))
    config = ExportConfig(finetune=2, max_loss=0.3)
    with pytest.raises(GstrimError, match="search.json: holds an earlier budget search; pass --resume"):
        export_model(Inputs(model, data), out, config)
    with pytest.raises(GstrimError, match=r"search.json: holds a budget search made with other settings \(.*input"):
        export_model(Inputs(model, data), out, config, RunControl(resume=True))
    assert not out.exists()
