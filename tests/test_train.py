"""Training: population edits keep Adam state aligned, 3DGS densification rules, the loop learns,
and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_scenes_equal, random_scene

from gstrim.example import generate_example
from gstrim.io.model import latest_checkpoint, load_model
from gstrim.pipelines.inputs import RunControl
from gstrim.pipelines.train import TrainSetup, train_model
from gstrim.train import DensifyConfig, DensifyStrategy, LearningRates, TrainConfig, Trainer, ops
from gstrim.train.init import mean_neighbour_distance
from gstrim.train.optim import means_lr
from gstrim.train.parameterization import RawParameters


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return generate_example(tmp_path_factory.mktemp("data") / "ex", seed=3, n_train=8, n_test=2, size=40,
                            supersample=1)


def params_with_moments(rng, n=20):
    scene = random_scene(rng, n, 1)
    params = {k: torch.nn.Parameter(v.clone()) for k, v in scene.params().items()}
    optimizers = RawParameters(LearningRates()).make_optimizers(params, extent=1.0)
    for p in params.values():
        p.grad = torch.randn_like(p)
    for opt in optimizers.values():
        opt.step()
    # tag each Gaussian's moments with its index so that reordering is visible
    for name, p in params.items():
        st = optimizers[name].state[p]
        st["exp_avg"] = torch.arange(n, dtype=torch.float32).view(-1, *([1] * (p.ndim - 1))).expand_as(p).clone()
        st["exp_avg_sq"] = st["exp_avg"].clone()
    state = {"grad2d": torch.arange(n, dtype=torch.float32), "other": 3}
    return params, optimizers, state


def moments(optimizers, params, name):
    return optimizers[name].state[params[name]]["exp_avg"]


def test_remove_keeps_rows_aligned(rng):
    params, optimizers, state = params_with_moments(rng)
    before = {k: v.detach().clone() for k, v in params.items()}
    mask = torch.from_numpy(rng.random(20) < 0.4)
    ops.remove(params, optimizers, state, mask)
    kept = torch.nonzero(~mask).squeeze(1).float()
    for name, p in params.items():
        torch.testing.assert_close(p.detach(), before[name][~mask])
        assert optimizers[name].param_groups[0]["params"][0] is p
        assert torch.equal(moments(optimizers, params, name).reshape(len(kept), -1)[:, 0], kept)
    assert torch.equal(state["grad2d"], kept) and state["other"] == 3


def test_duplicate_and_split(rng):
    params, optimizers, state = params_with_moments(rng)
    before = {k: v.detach().clone() for k, v in params.items()}
    mask = torch.zeros(20, dtype=torch.bool)
    mask[[2, 5, 7]] = True
    ops.duplicate(params, optimizers, state, mask)
    assert len(params["means"]) == 23
    torch.testing.assert_close(params["sh0"].detach()[20:], before["sh0"][mask])
    assert torch.all(moments(optimizers, params, "means")[20:] == 0) and torch.all(state["grad2d"][20:] == 0)

    before = {k: v.detach().clone() for k, v in params.items()}
    mask = torch.zeros(23, dtype=torch.bool)
    mask[[1, 22]] = True
    ops.split(params, optimizers, state, mask, torch.Generator().manual_seed(0))
    assert len(params["means"]) == 25  # 23 - 2 + 2 x 2
    torch.testing.assert_close(params["means"].detach()[:21], before["means"][~mask])
    new_scales = params["scales"].detach()[21:]
    expected = before["scales"][mask] - np.log(1.6)
    torch.testing.assert_close(new_scales, torch.cat([expected, expected]))
    torch.testing.assert_close(params["quats"].detach()[21:], before["quats"][mask].repeat(2, 1))
    # samples lie within a few standard deviations of the parent
    offsets = (params["means"].detach()[21:] - before["means"][mask].repeat(2, 1)).norm(dim=1)
    assert torch.all(offsets < 6 * torch.exp(before["scales"][mask]).amax(1).repeat(2))
    assert torch.all(moments(optimizers, params, "scales")[21:] == 0)


def test_reset_opacity(rng):
    params, optimizers, _ = params_with_moments(rng)
    ops.reset_opacity(params, optimizers, 0.01)
    assert torch.all(torch.sigmoid(params["opacities"].detach()) <= 0.01 + 1e-6)
    assert torch.all(moments(optimizers, params, "opacities") == 0)
    assert optimizers["opacities"].param_groups[0]["params"][0] is params["opacities"]


def test_densify_rules():
    n = 6
    # extent 2: "small" means largest scale <= 0.02, "oversized" > 0.2
    scales = torch.log(torch.tensor([0.001, 0.001, 0.15, 0.15, 0.001, 0.001]))[:, None].repeat(1, 3)
    opac = torch.logit(torch.tensor([0.5, 0.5, 0.5, 0.5, 0.001, 0.5]))
    params = {
        "means": torch.nn.Parameter(torch.zeros(n, 3)), "scales": torch.nn.Parameter(scales),
        "quats": torch.nn.Parameter(torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)),
        "opacities": torch.nn.Parameter(opac), "sh0": torch.nn.Parameter(torch.arange(n).float()[:, None, None]
                                                                         .repeat(1, 1, 3)),
        "shN": torch.nn.Parameter(torch.zeros(n, 0, 3)),
    }
    optimizers = RawParameters().make_optimizers(params, 1.0)
    strategy = DensifyStrategy(DensifyConfig(), extent=2.0)
    state = strategy.initialize_state(n)
    # mean gradients 3e-4 (>= 2e-4) for Gaussians 0 and 2, 1e-4 for 1 and 3; 4 is transparent; 5 spans 30 px
    state["grad2d"] = torch.tensor([6e-4, 2e-4, 9e-4, 3e-4, 0.0, 0.0])
    state["count"] = torch.tensor([2.0, 2.0, 3.0, 3.0, 1.0, 1.0])
    state["max_radii"] = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 30.0])
    counts = strategy.densify_and_prune(params, optimizers, state, prune_large=True,
                                        generator=torch.Generator().manual_seed(0))
    assert counts == {"cloned": 1, "split": 1, "pruned": 2}
    # survivors: 0, 1, 3, the clone of 0, two halves of 2 (scale 0.15 / 1.6)
    assert params["sh0"].detach()[:, 0, 0].tolist() == [0, 1, 3, 0, 2, 2]
    torch.testing.assert_close(torch.exp(params["scales"].detach()[4:]), torch.full((2, 3), 0.15 / 1.6))
    assert torch.all(state["grad2d"] == 0)


def test_means_lr_schedule():
    lrs = LearningRates()
    assert means_lr(0, 100, lrs, 2.0) == pytest.approx(2 * 1.6e-4)
    assert means_lr(100, 100, lrs, 2.0) == pytest.approx(2 * 1.6e-6)
    assert means_lr(50, 100, lrs, 1.0) == pytest.approx(1.6e-5)  # geometric midpoint
    constant = LearningRates(means=1.6e-6, means_final=1.6e-6)
    assert means_lr(37, 100, constant, 3.0) == pytest.approx(4.8e-6)


def test_mean_neighbour_distance(rng):
    # a clustered cloud with outliers, so that the grid search needs several shells
    pts = np.concatenate([rng.normal(size=(250, 3)) * 0.05, rng.normal(size=(50, 3)) * 3])
    pts = torch.from_numpy(pts.astype(np.float32))
    d2 = ((pts[:, None] - pts[None]) ** 2).sum(-1).double()
    d2.fill_diagonal_(float("inf"))
    expected = torch.sqrt(torch.topk(d2, 3, largest=False).values.mean(1)).float()
    torch.testing.assert_close(mean_neighbour_distance(pts), expected, rtol=1e-5, atol=1e-6)


def test_trainer_fits_views(tiny_data):
    from gstrim.data import load_dataset
    from gstrim.train.init import initial_scene

    ds = load_dataset(tiny_data)
    scene = initial_scene(ds, random_points=800, half_size=1.0, seed=1)
    trainer = Trainer(scene, ds.train, extent=ds.extent, config=TrainConfig(iterations=120, sh_degree=1))
    first = [float(trainer.train_step()["loss"]) for _ in range(8)]
    for _ in range(104):
        trainer.train_step()
    last = [float(trainer.train_step()["loss"]) for _ in range(8)]
    assert np.mean(last) < 0.6 * np.mean(first)
    assert trainer.active_sh_degree() == 0 and trainer.step == 120


def test_resume_equals_uninterrupted(tiny_data, tmp_path, monkeypatch):
    densify = DensifyConfig(start=20, every=20, reset_every=60, stop=70)
    setup = TrainSetup(densify=densify, init_points=400, save_iterations=[])
    full = train_model(tiny_data, tmp_path / "full", TrainConfig(iterations=80), setup)

    original_step = Trainer.train_step

    def interrupted_step(self):
        if self.step == 43:
            raise KeyboardInterrupt
        return original_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_model(tiny_data, tmp_path / "part", TrainConfig(iterations=80), setup)
    monkeypatch.setattr(Trainer, "train_step", original_step)
    assert latest_checkpoint(tmp_path / "part").name == "chkpnt43.pt"  # written on the interrupt
    resumed = train_model(tiny_data, tmp_path / "part", control=RunControl(resume=True))
    assert resumed.summary.iterations == 80 and len(full.scene) != 400  # densification ran
    for name, value in full.scene.params().items():
        torch.testing.assert_close(getattr(resumed.scene, name), value, rtol=0, atol=0, msg=name)
    model = load_model(tmp_path / "part")
    assert model.iteration == 80 and model.label == "ours_80" and len(model.scene) == len(full.scene)
    assert model.recorded_dataset()[0] == str(tiny_data.resolve())


def test_run_folders_record_paths_that_move_with_them(tmp_path):
    from gstrim.io.model import relative_to_folder, resolve_recorded

    run, data = tmp_path / "runs" / "a", tmp_path / "captures" / "cup"
    assert relative_to_folder(data, run) == "../../captures/cup"
    moved = tmp_path / "elsewhere"
    assert resolve_recorded("../../captures/cup", moved / "runs" / "a") == (moved / "captures" / "cup").resolve()
    assert relative_to_folder("/", run) == "/"  # nothing shared but the root: absolute


def test_short_runs_densify_in_their_first_half():
    assert DensifyConfig().stop_for(30_000) == 15_000  # 3DGS exactly
    assert DensifyConfig().stop_for(7_000) == 3_500
    assert DensifyConfig().stop_for(100_000) == 15_000
    assert DensifyConfig(stop=900).stop_for(7_000) == 900  # an explicit stop is kept


def test_saved_model_precedes_the_densification_of_its_iteration(tiny_data, tmp_path):
    """3DGS saves iteration N before densifying at N, and the last iteration of a run never densifies: the
    scene a 40-iteration run saves at 30 is the final scene of the same run stopped at 30."""
    constant = LearningRates(means=1e-5, means_final=1e-5)  # the same rates whatever the run's length
    densify = DensifyConfig(start=5, every=10, stop=100)
    long = train_model(tiny_data, tmp_path / "long", TrainConfig(iterations=40, lrs=constant),
                       TrainSetup(densify=densify, init_points=400, save_iterations=[30]))
    short = train_model(tiny_data, tmp_path / "short", TrainConfig(iterations=30, lrs=constant),
                        TrainSetup(densify=densify, init_points=400))
    saved_30 = load_model(tmp_path / "long", iteration=30).scene
    assert len(saved_30) != 400 and len(long.scene) != len(saved_30)  # densified at 10, 20 and 30
    assert_scenes_equal(saved_30, short.scene)
    # the final checkpoint keeps the statistics gathered since the last densification (for --stats checkpoint)
    state = load_model(tmp_path / "short" / "checkpoints" / "chkpnt30.pt").checkpoint["strategy_state"]
    assert float(state["count"].max()) == 10


def test_loaded_optimizer_state_keeps_the_trainers_rates(tiny_data, rng):
    from gstrim.data import load_dataset

    ds = load_dataset(tiny_data)
    scene = random_scene(rng, 30, 1)
    first = Trainer(scene, ds.train, extent=ds.extent, config=TrainConfig(iterations=5, sh_degree=1))
    for _ in range(3):
        first.train_step()
    states = {k: opt.state_dict() for k, opt in first.optimizers.items()}
    slow = LearningRates(means=1e-9, means_final=1e-9, scales=1e-7)
    second = Trainer(first.scene(), ds.train, extent=ds.extent, config=TrainConfig(iterations=5, sh_degree=1, lrs=slow))
    second.load_optimizer_state(states)
    moments = second.optimizers["scales"].state[second.params["scales"]]
    assert torch.equal(moments["exp_avg"], first.optimizers["scales"].state[first.params["scales"]]["exp_avg"])
    assert second.optimizers["scales"].param_groups[0]["lr"] == 1e-7


def test_a_parameterization_changes_what_is_optimised_not_the_loop(tiny_data, rng):
    """A toy parameterisation (one colour shared by every Gaussian, everything else frozen) trains through the
    unchanged loop: only its tensor moves, and the decoded scene renders with it."""
    from gstrim.data import load_dataset
    from gstrim.scene import GaussianScene
    from gstrim.train.parameterization import Parameterization

    class SharedColour(Parameterization):
        def __init__(self, scene):
            self.frozen = {k: v.detach().clone() for k, v in scene.params().items()}

        def init_params(self, scene):
            return {"means": scene.means, "colour": torch.zeros(1, 1, 3)}

        def decode(self, params):
            n = params["means"].shape[0]
            return GaussianScene(**{**self.frozen, "means": params["means"].detach(),
                                    "sh0": params["colour"].expand(n, 1, 3)})

        def make_optimizers(self, params, extent):
            return {"colour": torch.optim.Adam([params["colour"]], lr=0.05)}

    ds = load_dataset(tiny_data)
    scene = random_scene(rng, 60, 0)
    trainer = Trainer(scene, ds.train, extent=ds.extent, config=TrainConfig(iterations=30, sh_degree=0),
                      parameterization=SharedColour(scene))

    def loss_over_views() -> float:
        from gstrim.render import rasterize
        from gstrim.train.loss import photometric_loss

        with torch.no_grad():
            scene = trainer.scene()
            return sum(float(photometric_loss(rasterize(scene, c, background=ds.background).image, c.image))
                       for c in ds.train)

    before = loss_over_views()
    for _ in range(30):
        trainer.train_step()
    assert loss_over_views() < before
    result = trainer.scene()
    assert torch.equal(result.means, scene.means) and torch.equal(result.scales, scene.scales)
    assert torch.all(result.sh0 == trainer.params["colour"].detach()) and trainer.params["colour"].abs().sum() > 0
