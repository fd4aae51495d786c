"""`gstrim lod`: the level schedule (counts exact, steps shared, nested from the finer level), the run folders,
the table, the Streamed SOG of every level, resume and refusals."""

from __future__ import annotations

import json
import os

import pytest
from test_cli import assert_one_line_error, run
from test_trim_budget import SHORT

from gstrim.io.model import load_model, resolve_recorded
from gstrim.io.streamed_sog import level_counts
from gstrim.pipelines.lod import LodConfig, level_configs, share_steps
from gstrim.prune.strategy import TrimConfig


def test_steps_are_shared_by_how_far_each_level_goes():
    assert share_steps(10, [500, 250, 125, 62], 1000) == [2, 2, 3, 3]  # ties: the extra prunes go to coarse levels
    assert share_steps(10, [100, 50], 1000) == [8, 2]  # 10x then 2x: most of the way is the first level's
    assert share_steps(2, [500, 250, 125], 1000) == [1, 1, 1]  # at least one prune per level


def test_nested_levels_share_one_trims_iterations():
    trim = TrimConfig().resolved("cpu")
    counts = LodConfig().counts(1000)
    assert counts == [500, 250, 125, 62]
    nested = level_configs(LodConfig(), trim, counts, 1000)
    assert [c.target_count for c in nested] == counts
    assert [c.finetune for c in nested] == [trim.finetune // 8] * 3 + [trim.finetune - 3 * (trim.finetune // 8)]
    assert sum(c.iterations for c in nested) == trim.iterations  # the chain costs one trim's iterations
    assert sum(c.steps for c in nested) == trim.steps and all(c.every == trim.every for c in nested)
    independent = level_configs(LodConfig(chain="independent"), trim, counts, 1000)
    assert all(c.steps == trim.steps and c.finetune == trim.finetune for c in independent)


@pytest.mark.parametrize("lod, message", [
    (LodConfig(levels=[0.5, 0.6]), "coarser"),
    (LodConfig(levels=[1.5]), "fractions"),
    (LodConfig(level_counts=[0]), "1 to"),
])
def test_bad_levels_are_refused(lod, message):
    from gstrim.errors import ConfigError
    with pytest.raises(ConfigError, match=message):
        lod.counts(1000)


def test_lod_makes_every_level_and_its_streamed_sog(baseline, tmp_path, capsys):
    data, model = baseline
    n = len(load_model(model).scene)
    out = tmp_path / "lod"
    code, printed, err = run(capsys, "lod", model, "-o", out, "--levels", "0.5", "0.25", *SHORT,
                             "--sog-finetune", "2")
    assert code == 0, err
    counts = [round(n * 0.5), round(n * 0.25)]
    table = json.loads((out / "levels.json").read_text())
    assert [row["gaussians"] for row in table["levels"]] == [n, *counts]
    assert all(row["psnr"] is not None for row in table["levels"])
    # each trimmed level fine-tuned through SOG, and chunked with that SOG's own tables
    assert all((out / f"level-{k}" / "scene.sog").exists() for k in (1, 2))
    assert all(row["sog_psnr"] is not None for row in table["levels"][1:])
    from gstrim.io.sog import read_sog
    from gstrim.io.streamed_sog import read_streamed_sog
    finetuned, chunked = read_sog(out / "level-2" / "scene.sog"), read_streamed_sog(out / "lod-meta.json", 2)
    for name in ("scales", "opacities", "sh0"):  # the same stored values (positions: each chunk's own grid)
        assert sorted(getattr(finetuned, name).flatten().tolist()) == sorted(getattr(chunked, name).flatten().tolist())
    assert level_counts(out / "lod-meta.json") == [n, *counts]
    # nested: level 2 is a trim of level 1, on the input's dataset
    config = json.loads((out / "level-2" / "config.json").read_text())
    assert resolve_recorded(config["input"], out / "level-2").parent.parent.parent == (out / "level-1").resolve()
    assert resolve_recorded(config["data"]["path"], out / "level-2") == data.resolve()
    assert len(load_model(out / "level-2").scene) == counts[1]
    level_1, level_2 = (json.loads((out / f"level-{k}" / "results.json").read_text()) for k in (1, 2))
    assert level_2["trim"]["input"]["PSNR"] == level_1["trim"]["output"]["PSNR"]  # evaluated once, not again
    assert "| 2 |" in printed and "lod-meta.json" in printed
    # finished: a resume trims nothing again
    stamp = os.stat(out / "level-1" / "results.json").st_mtime_ns
    code, _, err = run(capsys, "lod", model, "-o", out, "--levels", "0.5", "0.25", *SHORT, "--sog-finetune", "2",
                       "--resume")
    assert code == 0, err
    assert os.stat(out / "level-1" / "results.json").st_mtime_ns == stamp
    # other settings, or no --resume, are refused in one line
    code, _, err = run(capsys, "lod", model, "-o", out, "--levels", "0.5", "0.2", *SHORT, "--sog-finetune", "2",
                       "--resume")
    assert_one_line_error(code, err, "other settings")
    code, _, err = run(capsys, "lod", model, "-o", out, "--levels", "0.5", "0.25", *SHORT)
    assert_one_line_error(code, err, "not empty")


def test_photo_free_levels_all_learn_from_the_input(baseline, tmp_path, capsys):
    _, model = baseline
    scene = tmp_path / "scene.ply"
    from gstrim.io.formats import save_scene
    save_scene(scene, load_model(model).scene)
    out = tmp_path / "lod"
    code, _, err = run(capsys, "lod", scene, "-o", out, "--levels", "0.5", "0.25", *SHORT, "--views", "4",
                       "--resolution", "24")
    assert code == 0, err
    config = json.loads((out / "level-2" / "config.json").read_text())
    assert "virtual" in config["data"]
    assert resolve_recorded(config["data"]["teacher"], out / "level-2") == scene.resolve()  # not level 1
    rows = json.loads((out / "levels.json").read_text())["levels"]
    assert rows[2]["psnr"] is not None and rows[0]["psnr"] is None  # the input is the reference itself
