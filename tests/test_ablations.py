"""The ablations of Sec. 4.3 (`gstrim ablate`): the no-prior schedule, the lottery ticket's re-initialisation,
their rows, and a sweep picking the rows up."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import assert_one_line_error, run

from gstrim.errors import ConfigError
from gstrim.io.model import load_model
from gstrim.pipelines.ablate import AblationConfig, lottery_ticket, no_prior, no_prior_densify, reinitialized
from gstrim.pipelines.inputs import RunControl
from gstrim.pipelines.sweep import run_sweep
from gstrim.pipelines.sweep_config import SweepConfig, SweepRunConfigs
from gstrim.pipelines.train import TrainSetup
from gstrim.prune.strategy import TrimConfig
from gstrim.train import DensifyConfig, DensifyStrategy


def test_no_prior_schedule_scales_like_training():
    full = no_prior_densify(30_000, 0.005)
    assert (full.stop_for(30_000), full.prune_until) == (15_000, 25_000)  # the paper's 15k, +10k, then 5k
    short = no_prior_densify(7_000, 0.01)
    assert (short.stop_for(7_000), short.prune_until, short.prune_opacity) == (3_500, 5_833, 0.01)


def test_opacity_pruning_continues_after_densification_until_prune_until():
    config = DensifyConfig(start=10, every=10, stop=50, prune_until=80, prune_opacity=0.2)
    strategy = DensifyStrategy(config, extent=1.0, iterations=100)
    n = 6
    params = {"means": torch.nn.Parameter(torch.zeros(n, 3)), "opacities": torch.nn.Parameter(
        torch.logit(torch.tensor([0.1, 0.5, 0.15, 0.9, 0.3, 0.05])))}
    state = strategy.initialize_state(n)
    strategy.step_begin(params, {}, state, 55, torch.Generator())  # not a multiple of `every`
    assert len(params["means"]) == n
    strategy.step_begin(params, {}, state, 60, torch.Generator())
    assert torch.allclose(torch.sigmoid(params["opacities"]), torch.tensor([0.5, 0.9, 0.3]))
    params["opacities"].data[:] = torch.logit(torch.tensor(0.1))
    strategy.step_begin(params, {}, state, 80, torch.Generator())  # past prune_until: only optimisation
    assert len(params["means"]) == 3


def test_no_prior_run_writes_its_row(baseline, tmp_path):
    data, _ = baseline
    setup = TrainSetup(densify=DensifyConfig(start=10, every=10, reset_every=1_000), init_points=300)
    with pytest.raises(ConfigError, match="every Gaussian"):
        no_prior(data, tmp_path / "all", AblationConfig(iterations=60, prune_opacity=0.9), setup)
    row = no_prior(data, tmp_path / "np", AblationConfig(iterations=60, prune_opacity=0.012), setup)
    assert row["ablation"] == "no-prior" and row["settings"]["prune_until"] == 50
    saved = json.loads((tmp_path / "np/ablation.json").read_text())
    assert saved == json.loads(json.dumps(row))
    scene = load_model(tmp_path / "np").scene
    assert len(scene) == row["gaussians"] and torch.sigmoid(scene.opacities).min() < 1  # trained
    assert row["psnr"] > 5 and row["iterations"] == 60


def test_lottery_ticket_keeps_positions_and_retrains_as_long_as_the_baseline(baseline, tmp_path):
    data, model = baseline
    from gstrim.pipelines.trim import trim_scene

    trimmed = trim_scene(model, tmp_path / "t", TrimConfig(target_removal=0.5, steps=2, every=3, finetune=4),
                         RunControl(no_eval=True))
    fresh = reinitialized(trimmed.scene, seed=3)
    assert torch.equal(fresh.means, trimmed.scene.means)
    assert torch.allclose(torch.sigmoid(fresh.opacities), torch.tensor(0.1))
    assert torch.equal(fresh.quats, torch.tensor([1.0, 0, 0, 0]).expand_as(fresh.quats))
    assert not torch.allclose(fresh.sh0, trimmed.scene.sh0) and fresh.shN.abs().max() == 0
    row = lottery_ticket(tmp_path / "t", tmp_path / "lt")
    assert row["iterations"] == 40  # the baseline's training, found through the trim's recorded input
    assert row["gaussians"] == len(trimmed.scene)  # no densification: the ticket is the pruned set
    assert len(load_model(tmp_path / "lt").scene) == len(trimmed.scene)


def test_ablate_from_the_command_line_and_in_a_sweep(baseline, tmp_path, capsys):
    data, model = baseline
    sweep = tmp_path / "sweep"
    config = SweepConfig(removals=[0.5], scores=["opacity"], fps_views=1, fps_repeats=1)
    configs = SweepRunConfigs(TrimConfig(steps=2, every=3, finetune=4))
    run_sweep(model, sweep, config, configs)
    code, out, _ = run(capsys, "ablate", "lottery-ticket", sweep / "runs/opacity-0.5", "-o",
                       sweep / "ablations/lottery-ticket", "--iterations", "12")
    assert code == 0 and "lottery-ticket:" in out and "12 iterations" in out
    result = run_sweep(model, sweep, config, configs)
    ablation = result.rows[-1]
    assert (ablation.name, ablation.kind, ablation.variant) == ("lottery-ticket", "ablation", "lottery-ticket")
    assert ablation.gaussians == result.rows[2].gaussians and ablation.fps > 0
    code, _, err = run(capsys, "ablate", "no-prior", tmp_path / "missing", "-o", tmp_path / "x")
    assert_one_line_error(code, err, "missing")
    with pytest.raises(SystemExit):
        run(capsys, "ablate", "other", data, "-o", tmp_path / "y")
