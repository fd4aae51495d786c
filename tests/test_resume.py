"""Runs stopped at the worst moments resume to what an uninterrupted run records (bench/soak.py kills them at
random; these are the moments it found)."""

from __future__ import annotations

import pytest

from gstrim.compress.stages import CompressConfig
from gstrim.pipelines import run_folder as run_module
from gstrim.pipelines.compress import compress_model
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.records import Evaluation, RunSummary

QUICK = CompressConfig(qat_iterations=3, kmeans_steps_sh=1, kmeans_steps_shape=1)


def test_a_run_stopped_before_its_input_evaluation_evaluates_it_on_resume(baseline, tmp_path, monkeypatch):
    """Killed between recording the run and evaluating its input, the resumed run had no input evaluation."""
    _, model = baseline
    out = tmp_path / "c"
    real = run_module.RunFolder.evaluate_input

    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(run_module.RunFolder, "evaluate_input", killed)
    with pytest.raises(KeyboardInterrupt):
        compress_model(model, out, QUICK)
    assert (out / "config.json").is_file() and Evaluation.read(out, "input") is None
    monkeypatch.setattr(run_module.RunFolder, "evaluate_input", real)
    compress_model(None, out, QUICK, RunControl(resume=True))
    assert Evaluation.read(out, "input") is not None
    assert RunSummary.read(out, "compress").input is not None


def test_resume_with_nothing_recorded_starts_the_run(baseline, tmp_path):
    """Killed before the run recorded itself (or a script that always passes --resume): it starts, instead of
    'nothing to resume' now and 'not empty' without --resume."""
    _, model = baseline
    out = tmp_path / "c"
    out.mkdir()
    (out / ".config.json.x1y2.tmp").write_text("{")  # what a kill during the first write leaves
    compress_model(Inputs(model), out, QUICK, RunControl(resume=True))
    assert RunSummary.read(out, "compress") is not None


def test_equal_compressions_in_two_folders_give_equal_files(baseline, tmp_path):
    """A .gsz named its input by an absolute path: the same compression elsewhere was another file (and a shipped
    file carried its author's folders)."""
    from gstrim.compress.stages import gsz_path

    _, model = baseline
    files = []
    for out in (tmp_path / "a", tmp_path / "a much longer folder name" / "b"):
        compress_model(model, out, QUICK, RunControl(no_eval=True))
        files.append(gsz_path(out, 3).read_bytes())
    assert files[0] == files[1] and str(tmp_path).encode() not in files[0]
