"""`trim --max-loss`: the removal level inside the budget search, its bisection, the chosen run moved into the
output, and whole searches on the example scene (plain and with --compress)."""

from __future__ import annotations

import json

import pytest
from test_cli import assert_one_line_error, run

from gstrim.io.model import resolve_recorded
from gstrim.pipelines.trim_budget import MAX_TRIMS, REMOVALS, Level, choose, next_removal, promote


def _search(trim_loss, budget: float, reserve: float = 0.0) -> list[Level]:
    """The levels the search trims when a trim at removal r loses `trim_loss(r)`."""
    levels = []
    while (removal := next_removal(levels, budget, reserve)) is not None:
        loss = trim_loss(removal)
        levels.append(Level(removal, trim_loss=loss, bytes=round(1e6 * (1 - removal)), loss=loss))
    return levels


def test_the_levels_are_bisected_deeper_while_the_trim_stays_within_budget():
    levels = _search(lambda r: 3.0 * (r - 0.7), budget=0.4)  # within up to 0.833
    assert [lv.removal for lv in levels] == [0.8, 0.9, 0.85]
    best, within = choose(levels, 0.4)
    assert within and best.removal == 0.8  # the deepest level within budget: the smallest file


def test_the_levels_are_bisected_shallower_when_the_first_misses():
    levels = _search(lambda r: 4.0 * (r - 0.55), budget=0.3)  # within up to 0.625
    assert [lv.removal for lv in levels] == [0.8, 0.6, 0.7]
    assert choose(levels, 0.3)[0].removal == 0.6
    assert len(levels) <= MAX_TRIMS and all(lv.removal in REMOVALS for lv in levels)


def test_a_level_that_leaves_the_codec_too_little_is_not_deepened():
    # 0.8 loses 0.25 of 0.3: within the budget, but leaves less than the 0.1 reserve to a codec
    levels = _search(lambda r: 2.5 * (r - 0.7), budget=0.3, reserve=0.1)
    assert levels[1].removal < 0.8


def test_nothing_within_budget_chooses_the_closest():
    levels = _search(lambda r: 1.0 + r, budget=0.3)
    best, within = choose(levels, 0.3)
    assert not within and best.removal == min(lv.removal for lv in levels)


def test_promote_moves_the_run_and_keeps_its_recorded_paths(tmp_path):
    data, model = tmp_path / "data", tmp_path / "model"
    data.mkdir(), model.mkdir()
    out = tmp_path / "out"
    level = out / "search" / "removal-0.80"
    (level / "compressed" / "point_cloud").mkdir(parents=True)
    (level / "point_cloud").mkdir()
    (level / "config.json").write_text(json.dumps({"input": "../../../model", "data": {"path": "../../../data"}}))
    (level / "compressed" / "config.json").write_text(json.dumps({"input": "..",
                                                                  "data": {"path": "../../../../data"}}))
    (level / "results.json").write_text("{}")
    promote(level, out)
    assert not level.exists() and (out / "results.json").exists() and (out / "compressed" / "point_cloud").is_dir()
    top = json.loads((out / "config.json").read_text())
    assert resolve_recorded(top["input"], out) == model.resolve()
    assert resolve_recorded(top["data"]["path"], out) == data.resolve()
    inner = json.loads((out / "compressed" / "config.json").read_text())
    assert resolve_recorded(inner["input"], out / "compressed") == out.resolve()  # follows the moved trim
    assert resolve_recorded(inner["data"]["path"], out / "compressed") == data.resolve()
    promote(level, out)  # a resumed promotion that finds nothing left to move changes nothing
    assert json.loads((out / "config.json").read_text()) == top


SHORT = ["--steps", "2", "--every", "2", "--finetune", "2", "--stats-views", "2"]


def test_trim_max_loss_searches_the_level_and_leaves_the_chosen_trim_in_the_output(baseline, tmp_path, capsys):
    data, model = baseline
    out = tmp_path / "t"
    code, printed, _ = run(capsys, "trim", model, "-o", out, "--max-loss", "0.5", *SHORT)
    assert code == 0
    record = json.loads((out / "search" / "search.json").read_text())
    levels = record["levels"]
    assert 1 <= len(levels) <= MAX_TRIMS and levels[0]["removal"] == 0.8
    chosen = next(lv for lv in levels if f"removal-{lv['removal']:.2f}" == record["chosen"])
    if record["within"]:
        assert chosen["loss"] <= 0.5
        assert chosen["bytes"] == min(lv["bytes"] for lv in levels if lv["loss"] <= 0.5)
    # the output is the chosen level's trim run: its file, its summary, its recorded input and dataset
    summary = json.loads((out / "results.json").read_text())["trim"]
    assert summary["gaussians_out"] == chosen["gaussians"]
    assert (out / chosen["file"]).stat().st_size == chosen["bytes"]
    config = json.loads((out / "config.json").read_text())
    assert resolve_recorded(config["input"], out).is_relative_to(model.resolve())
    assert resolve_recorded(config["data"]["path"], out) == data.resolve()
    assert not (out / "search" / record["chosen"]).exists()
    assert "budget" in printed and record["chosen"] in printed
    # finished: a resume reads the record back and trims nothing
    code, again, _ = run(capsys, "trim", model, "-o", out, "--max-loss", "0.5", *SHORT, "--resume")
    assert code == 0 and json.loads((out / "search" / "search.json").read_text()) == record
    # other settings on a resume are refused, never reused silently
    code, _, err = run(capsys, "trim", model, "-o", out, "--max-loss", "0.4", *SHORT, "--resume")
    assert_one_line_error(code, err, "other settings")


def test_trim_compress_max_loss_searches_the_level_with_the_codec(baseline, tmp_path, capsys):
    _, model = baseline
    out = tmp_path / "t"
    tiny = ["--codebook-sh", "64", "--codebook-shape", "64", "--kmeans-steps-sh", "4", "--kmeans-steps-shape", "4",
            "--kmeans-batch", "256", "--qat-iterations", "4"]
    code, printed, _ = run(capsys, "trim", model, "-o", out, "--compress", "--max-loss", "3", *SHORT, *tiny)
    assert code == 0
    record = json.loads((out / "search" / "search.json").read_text())
    chosen = next(lv for lv in record["levels"] if f"removal-{lv['removal']:.2f}" == record["chosen"])
    assert chosen["file"].startswith("compressed/") and chosen["file"].endswith(".gsz")
    assert (out / chosen["file"]).stat().st_size == chosen["bytes"]
    # the level's loss is the file's (decoded from disk) against the untrimmed input: trim and codec together
    untrimmed = json.loads((out / "results.json").read_text())["trim"]["input"]["PSNR"]
    written = json.loads((out / "compressed" / "results.json").read_text())["compress"]["output"]["PSNR"]
    assert chosen["loss"] == pytest.approx(untrimmed - written, abs=1e-3)
    assert chosen["loss"] <= 3 or not record["within"]
    # the compressed run recorded the trim it compressed: the moved one
    inner = json.loads((out / "compressed" / "config.json").read_text())
    assert resolve_recorded(inner["input"], out / "compressed").is_relative_to(out.resolve() / "point_cloud")
    assert "gsz kB" in printed


@pytest.mark.parametrize("flags, named", [
    (["--max-loss", "0.3", "--target-removal", "0.5"], "--target-removal"),
    (["--max-loss", "0.3", "--no-prune"], "--no-prune"),
    (["--max-loss", "0.3", "--no-eval"], "--no-eval"),
    (["--max-loss", "-1"], "--max-loss"),
])
def test_trim_max_loss_refuses_what_it_cannot_search(baseline, tmp_path, capsys, flags, named):
    _, model = baseline
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "t", *flags)
    assert_one_line_error(code, err, named)
    assert not (tmp_path / "t").exists()
