"""`gstrim trim`: schedules hit their counts, variants, resume, statistics sources and errors."""

from __future__ import annotations

import json
import re

import pytest
import torch
from test_cli import assert_one_line_error, run

import gstrim
from gstrim.data import load_dataset
from gstrim.io import load_scene, save_scene
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.trim import trim_scene
from gstrim.prune.keep import prune_mask_count
from gstrim.prune.scores import SCORES
from gstrim.prune.strategy import TrimConfig, TrimStrategy
from gstrim.scene import GaussianScene
from gstrim.train import Trainer

SMALL = dict(steps=3, every=4, finetune=6)
NO_EVAL = RunControl(no_eval=True)


def test_target_count_is_exact(baseline, tmp_path):
    data, model = baseline
    n_in = len(load_scene(model / "point_cloud/iteration_40/point_cloud.ply"))
    result = gstrim.trim(model, tmp_path / "t", target_count=n_in // 4, **SMALL)  # the Python API
    assert len(result.scene) == n_in // 4
    saved = load_scene(tmp_path / "t/point_cloud/iteration_18/point_cloud.ply")
    assert len(saved) == n_in // 4
    results = json.loads((tmp_path / "t/results.json").read_text())
    assert {"input", "ours_18", "trim"} <= set(results)
    assert results["trim"]["gaussians_out"] == n_in // 4 and results["trim"]["ratio"] > 3.5
    assert results["input"]["gaussians"] == n_in
    assert results["trim"]["peak_memory"]["rss_mb"] > 100  # this process's peak, at the end of the run


@pytest.mark.parametrize("variant", [
    dict(score="opacity", target_removal=0.5), dict(score="lightgaussian", target_removal=0.5),
    dict(score="pup", target_removal=0.5), dict(one_shot=True, target_removal=0.5), dict(no_prune=True),
    dict(gamma=0.4)])
def test_variants(baseline, tmp_path, variant):
    data, model = baseline
    n_in = len(load_scene(model / "point_cloud/iteration_40/point_cloud.ply"))
    result = trim_scene(model, tmp_path / "t", TrimConfig(**variant, **SMALL), NO_EVAL)
    if "target_removal" in variant:
        assert len(result.scene) == round(n_in * 0.5)
    elif variant.get("no_prune"):
        assert len(result.scene) == n_in
    else:  # gamma: each step removes between max(0, 2 gamma - 1) and gamma of the population
        assert (1 - 0.4) ** 3 * n_in - 3 <= len(result.scene) < n_in
    assert result.summary.iterations == 18  # every variant trains as long


@pytest.mark.parametrize("score", ["gradient", "opacity", "lightgaussian", "pup", "gradient-visibility"])
def test_first_prune_keeps_the_top_of_its_score(baseline, score):
    """The strategy removes exactly the lowest-ranked Gaussians of the configured score (with the OR rule of
    eq. 5 for the gradient), scored over the statistics views on the loaded scene."""
    data, model = baseline
    ds = load_dataset(data)
    scene = load_scene(model / "point_cloud/iteration_40/point_cloud.ply")
    config = TrimConfig(score=score, target_removal=0.5, steps=2, every=1, finetune=0)
    strategy = TrimStrategy(config, ds.train, ds.background, len(scene), scene.sh_degree)
    params = {k: torch.nn.Parameter(v.clone()) for k, v in scene.params().items()}
    state = strategy.initialize_state(len(scene))
    strategy.step_begin(params, {}, state, 0, torch.Generator())
    entry = SCORES[score]
    values = entry.fn(scene, ds.train, background=ds.background, device="cpu")
    primary = entry.keep_with(scene, ds.train, background=ds.background) if entry.keep_with else values
    keep = ~prune_mask_count(primary, values, len(scene) - strategy.survivors[0])
    assert state["prunes_done"] == 1 and 0 < int(keep.sum()) < len(scene)
    assert torch.equal(params["means"].detach(), scene.means[keep])


def test_schedule_follows_the_device(baseline, tmp_path):
    data, model = baseline
    config = TrimConfig(target_removal=0.5)
    assert config.resolved("cpu").iterations == 3_000 and config.resolved("cuda").iterations == 15_000
    assert TrimConfig(finetune=7, preset="paper").resolved("cpu").iterations == 5_007


def test_resume_equals_uninterrupted(baseline, tmp_path, monkeypatch):
    data, model = baseline
    config = dict(target_removal=0.6, **SMALL)
    full = trim_scene(model, tmp_path / "full", TrimConfig(**config), NO_EVAL)
    original = Trainer.train_step

    def interrupted(self):
        if self.step == 7:  # after the second prune
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        trim_scene(model, tmp_path / "part", TrimConfig(**config), NO_EVAL)
    monkeypatch.setattr(Trainer, "train_step", original)
    resumed = trim_scene(None, tmp_path / "part", control=RunControl(resume=True, no_eval=True))
    for name, value in full.scene.params().items():
        torch.testing.assert_close(getattr(resumed.scene, name), value, rtol=0, atol=0, msg=name)


def test_checkpoint_statistics(baseline, tmp_path, capsys):
    data, model = baseline
    ckpt = next((model / "checkpoints").glob("chkpnt*.pt"))
    code, out, _ = run(capsys, "trim", ckpt, "-o", tmp_path / "c", "--stats", "checkpoint", "--target-removal", "0.5",
                       "--steps", "2", "--every", "3", "--finetune", "3", "--no-eval")
    assert code == 0
    counts = re.search(r"trimmed ([\d,]+) -> ([\d,]+) Gaussians", out).groups()
    before, after = (int(c.replace(",", "")) for c in counts)
    assert abs(after - before / 2) <= 0.5  # --target-removal 0.5, exact up to rounding
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "p", "--stats", "checkpoint", "--no-eval")
    assert_one_line_error(code, err, "point_cloud.ply", "--stats checkpoint")


def test_trim_errors(baseline, tmp_path, capsys):
    data, model = baseline
    small = ["--steps", "2", "--every", "2", "--finetune", "2", "--no-eval"]
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--gamma", "1.2", *small)
    assert_one_line_error(code, err, "--gamma", "0.225-0.6")
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--target-removal", "1", *small)
    assert_one_line_error(code, err, "--target-removal")
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--target-count", "0", *small)
    assert_one_line_error(code, err, "outside 1..")
    # a size target below one Gaussian's share of the file would leave an empty scene
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--target-mb", "0.0001", *small)
    assert_one_line_error(code, err, "--target-mb", "no Gaussian")
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "a", "--one-shot", "--gamma", "0.3", *small)
    assert_one_line_error(code, err, "--one-shot")
    assert not (tmp_path / "a").exists()
    # a scene far from every camera of the dataset
    scene = load_scene(model / "point_cloud/iteration_40/point_cloud.ply")
    moved = type(scene)(**{**scene.params(), "means": scene.means + 100.0})
    save_scene(tmp_path / "elsewhere.ply", moved)
    code, _, err = run(capsys, "trim", tmp_path / "elsewhere.ply", "--data", data, "-o", tmp_path / "b", *small)
    assert_one_line_error(code, err, "elsewhere.ply", "does not match")
    assert not (tmp_path / "b").exists()


def test_library_errors_name_fields_and_the_cli_names_flags(baseline, tmp_path, capsys):
    data, model = baseline
    with pytest.raises(gstrim.GstrimError) as exc:
        gstrim.trim(model, tmp_path / "lib", target_removal=1.5, **SMALL)
    assert str(exc.value).startswith("target_removal must be in [0, 1)")
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "cli", "--target-removal", "1.5", "--no-eval")
    assert_one_line_error(code, err, "--target-removal must be in [0, 1)")
    code, _, err = run(capsys, "trim", model, "-o", tmp_path / "cli", "--stats-views", "0", "--no-eval")
    assert_one_line_error(code, err, "--stats-views must be at least 1")
    code, _, err = run(capsys, "--threads", "0", "info", model)
    assert_one_line_error(code, err, "--threads must be at least 1")
    assert not (tmp_path / "lib").exists() and not (tmp_path / "cli").exists()


def test_threads_set_torch_and_numba_together(monkeypatch):
    import numba

    from gstrim.threads import set_threads

    before = torch.get_num_threads(), numba.get_num_threads()
    try:
        monkeypatch.setenv("GSTRIM_THREADS", "1")
        assert set_threads() == 1 and torch.get_num_threads() == 1 and numba.get_num_threads() == 1
        monkeypatch.setenv("GSTRIM_THREADS", "many")
        with pytest.raises(gstrim.GstrimError, match="GSTRIM_THREADS='many'"):
            set_threads()
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def test_checkpoint_input_keeps_adam_moments_and_refuses_empty_statistics(baseline, tmp_path, capsys):
    data, model = baseline
    ckpt_path = next((model / "checkpoints").glob("chkpnt*.pt"))
    ckpt = torch.load(ckpt_path, weights_only=True)
    same_scene = tmp_path / "same.ply"
    save_scene(same_scene, GaussianScene(**ckpt["params"]))
    config = dict(no_prune=True, steps=1, every=1, finetune=2)
    from_ckpt = trim_scene(ckpt_path, tmp_path / "a", TrimConfig(**config), NO_EVAL)
    from_ply = trim_scene(Inputs(same_scene, data), tmp_path / "b", TrimConfig(**config), NO_EVAL)
    # the same parameters and views; only the checkpoint carries Adam moments, so the first steps differ
    assert not torch.equal(from_ckpt.scene.opacities, from_ply.scene.opacities)

    ckpt["strategy_state"]["count"].zero_()
    ckpt["strategy_state"]["grad2d"].zero_()
    empty = tmp_path / "checkpoints" / "chkpnt40.pt"
    empty.parent.mkdir()
    torch.save(ckpt, empty)
    code, _, err = run(capsys, "trim", empty, "--data", data, "-o", tmp_path / "c", "--stats", "checkpoint",
                       "--no-eval")
    assert_one_line_error(code, err, "chkpnt40.pt", "--stats checkpoint", "statistics are empty")
    assert not (tmp_path / "c").exists()


def test_restart_lr_jumps_back_at_every_prune_and_decays_to_the_final_rate():
    from gstrim.prune.strategy import finetune_parameters
    from gstrim.train.optim import means_lr

    config = TrimConfig(restart_lr=1e-4, steps=3, every=10, finetune=20)
    rates = finetune_parameters(config)
    lr = [means_lr(step, config.iterations, rates.lrs, 2.0, rates.restarts) for step in range(config.iterations + 1)]
    for start, end in ((0, 10), (10, 20), (20, 50)):
        assert lr[start] == pytest.approx(2e-4)
        assert all(a > b for a, b in zip(lr[start:end], lr[start + 1:end], strict=False))  # decays in between
    assert lr[50] == pytest.approx(2 * 1.6e-6)
    constant = finetune_parameters(TrimConfig(steps=3, every=10, finetune=20))
    assert all(means_lr(s, 50, constant.lrs, 2.0, constant.restarts) == pytest.approx(3.2e-6) for s in (0, 9, 10, 49))


def test_restart_rates_boost_the_other_rates_after_every_prune_and_decay_back():
    import torch

    from gstrim.prune.strategy import finetune_parameters
    from gstrim.train.optim import LearningRates

    config = TrimConfig(restart_rates=4.0, steps=3, every=10, finetune=20)
    rates = finetune_parameters(config)
    params = {k: torch.nn.Parameter(torch.zeros(2, 3)) for k in ("means", "scales", "quats", "opacities", "sh0", "shN")}
    optimizers = rates.make_optimizers(params, extent=2.0)
    base = LearningRates()

    def lr(step: int, name: str) -> float:
        rates.update_learning_rates(optimizers, step, config.iterations, 2.0)
        return optimizers[name].param_groups[0]["lr"]

    for name in ("scales", "quats", "opacities", "sh0", "shN"):
        for start, end in ((0, 10), (10, 20), (20, 50)):
            assert lr(start, name) == pytest.approx(4 * getattr(base, name))
            assert lr(start + (end - start) // 2, name) == pytest.approx(2 * getattr(base, name))  # log-linear
        assert lr(50, name) == pytest.approx(getattr(base, name))
    assert lr(0, "means") == lr(30, "means") == pytest.approx(2 * 1.6e-6)  # the position rate stays the recipe's
    with pytest.raises(Exception, match="restart_rates"):
        TrimConfig(restart_rates=0.5).validate()


def test_a_recipe_sets_score_and_rate_unless_they_are_given(baseline, tmp_path, capsys):
    from gstrim.prune.strategy import finetune_parameters

    for kind, recipe, score, rate in (("colmap", "paper", "gradient", None), (None, "paper", "gradient", None),
                                      ("blender", "objects", "gradient-visibility", 1.6e-4),
                                      ("virtual", "paper", "gradient", None)):
        auto = TrimConfig().with_recipe(kind)  # the default, auto, by the dataset's kind
        assert (auto.recipe, auto.score, auto.restart_lr) == (recipe, score, rate), kind
    assert TrimConfig().resolved("cpu").recipe == "auto"  # waits for the dataset
    objects = TrimConfig(recipe="objects").resolved("cpu")
    assert (objects.score, objects.restart_lr, objects.restart_rates) == ("gradient-visibility", 1.6e-4, 3.0)
    assert TrimConfig().with_recipe("colmap").restart_rates == 1.0  # the paper's rates stay constant
    assert finetune_parameters(TrimConfig(recipe="objects", steps=3, every=10, finetune=20)).boost == 3.0
    assert finetune_parameters(TrimConfig(recipe="objects", steps=3, every=10, finetune=20)).restarts == (0, 10, 20)
    given = TrimConfig(recipe="objects", score="gradient").resolved("cpu")
    assert (given.score, given.restart_lr) == ("gradient", 1.6e-4)
    with pytest.raises(Exception, match="recipe"):
        TrimConfig(recipe="nope").validate()
    # through the command line: the run records what the recipe chose (the example is a Blender dataset)
    data, model = baseline
    for flags, expected in (([], ("objects", "gradient-visibility", 1.6e-4, 3.0)),
                            (["--recipe", "paper"], ("paper", "gradient", None, 1.0))):
        out = tmp_path / f"t{len(flags)}"
        code, _, err = run(capsys, "trim", model, "-o", out, *flags, "--target-removal", "0.5", "--steps", 2,
                           "--every", 2, "--finetune", 2, "--no-eval")
        assert code == 0, err
        recorded = json.loads((out / "config.json").read_text())["trim"]
        assert (recorded["recipe"], recorded["score"], recorded["restart_lr"], recorded["restart_rates"]) == expected


def test_a_run_recorded_by_an_older_gstrim_resumes_unless_it_used_a_retired_setting(baseline, tmp_path):
    from gstrim.errors import GstrimError
    from gstrim.options import from_record

    data, model = baseline
    out = tmp_path / "t"
    first = trim_scene(model, out, TrimConfig(target_removal=0.5, **SMALL), NO_EVAL)
    recorded = json.loads((out / "config.json").read_text())
    recorded["trim"] |= {"fade": None, "regrow": None}  # settings of an older version, unset
    before_recipes = {k: v for k, v in recorded["trim"].items() if k != "recipe"}
    assert from_record(TrimConfig, before_recipes).recipe == "paper"  # what runs did before recipes existed
    before_rates = {k: v for k, v in recorded["trim"].items() if k != "restart_rates"}
    assert from_record(TrimConfig, before_rates).restart_rates == 1.0  # an older objects run keeps its rates
    (out / "config.json").write_text(json.dumps(recorded))
    again = trim_scene(None, out, control=RunControl(resume=True, no_eval=True))
    assert torch.equal(again.scene.means, first.scene.means)
    recorded["trim"]["fade"] = 50  # one that changed what the run did
    (out / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(GstrimError, match=r"config.json.*fade=50"):
        trim_scene(None, out, control=RunControl(resume=True, no_eval=True))


def test_results_record_where_the_time_went(baseline, tmp_path):
    """Per-phase timings in results.json: the prunes' scoring once per prune and outside the fit loop's time,
    the fit's iterations and pace, the evaluations, the write; together about the run's time."""
    import time

    from gstrim import timing

    _, model = baseline
    t0 = time.perf_counter()
    trim_scene(model, tmp_path / "t", TrimConfig(target_removal=0.5, **SMALL), RunControl())
    elapsed = time.perf_counter() - t0
    phases = json.loads((tmp_path / "t/results.json").read_text())["trim"]["phases"]
    assert {"load", "setup", "evaluation", "scoring", "fit", "write", "checkpoint"} <= set(phases)
    assert phases["scoring"]["times"] == SMALL["steps"] and phases["evaluation"]["times"] == 2
    assert phases["fit"]["items"] == 18 and phases["fit"]["per_second"] > 0
    total = sum(p["seconds"] for p in phases.values())
    assert 0.5 * elapsed < total <= elapsed
    with timing.phase("outside a run") as handle:  # no recording: nothing is timed, nothing fails
        handle.items += 1
