"""The learned keep-gate of `trim --mask-weight`: its gradient against finite differences of the dense float64
renderer, its forward pass, and a trim that prunes by it at the schedule's counts and bakes it at the end."""

from __future__ import annotations

import pytest
import torch
from test_render import make_camera, make_scene

from gstrim.data import load_dataset
from gstrim.io import load_scene
from gstrim.prune.mask import MaskedParameters, bake, masked_opacities
from gstrim.prune.strategy import TrimConfig, TrimStrategy, finetune_parameters
from gstrim.render.reference import render_dense
from gstrim.scene import GaussianScene
from gstrim.train import TrainConfig, Trainer


def _loss(scene: GaussianScene, opacities: torch.Tensor, camera, weights: torch.Tensor) -> torch.Tensor:
    p = scene.params()
    image = render_dense(p["means"], p["scales"], p["quats"], opacities, p["sh0"], p["shN"], camera.viewmat,
                         camera.K, camera.width, camera.height, 3, torch.zeros(3, dtype=torch.float64))["image"]
    return (weights * image).sum()


def test_the_gate_gradient_matches_finite_differences_of_the_render(rng):
    """d loss / d m through the gated opacity logit and the dense float64 renderer, against central
    differences of the loss."""
    scene = make_scene(rng, n=12)
    camera = make_camera(rng, width=20, height=18)
    weights = torch.tensor(rng.normal(size=(18, 20, 3)))
    m0 = torch.tensor(rng.normal(1.0, 2.0, len(scene)))
    m = m0.clone().requires_grad_(True)
    _loss(scene, masked_opacities(scene.opacities, m), camera, weights).backward()
    h = 1e-6
    for i in range(len(scene)):
        step = torch.zeros(len(scene), dtype=torch.float64)
        step[i] = h
        numeric = (_loss(scene, masked_opacities(scene.opacities, m0 + step), camera, weights)
                   - _loss(scene, masked_opacities(scene.opacities, m0 - step), camera, weights)) / (2 * h)
        assert float(m.grad[i]) == pytest.approx(float(numeric), rel=1e-5, abs=1e-9)


def test_the_gate_multiplies_the_opacity(rng):
    opacities = torch.tensor(rng.normal(0, 3, 500))
    logits = torch.tensor(rng.normal(0, 6, 500))
    gated = torch.sigmoid(masked_opacities(opacities, logits))
    torch.testing.assert_close(gated, torch.sigmoid(opacities) * torch.sigmoid(logits), rtol=1e-9, atol=1e-12)
    assert bool(torch.isfinite(masked_opacities(torch.tensor([40.0, -40.0]), torch.tensor([40.0, -40.0]))).all())


def test_a_masked_trim_prunes_by_the_mask_at_the_schedules_counts_and_ends_unmasked(baseline):
    data, model = baseline
    scene = load_scene(model / "point_cloud/iteration_40/point_cloud.ply")
    dataset = load_dataset(data)
    config = TrimConfig(score="gradient", target_removal=0.6, mask_weight=0.5, steps=3, every=4, finetune=6)
    parameterization = finetune_parameters(config)
    assert isinstance(parameterization, MaskedParameters) and parameterization.until == 8
    strategy = TrimStrategy(config, dataset.train, dataset.background, len(scene), scene.sh_degree,
                            extent=dataset.extent)
    trainer = Trainer(scene, dataset.train, extent=dataset.extent, strategy=strategy, parameterization=parameterization,
                      config=TrainConfig(iterations=config.iterations, sh_degree=scene.sh_degree, sh_interval=0,
                                         device="cpu"))
    counts = []
    while trainer.step < 4:  # the mask learns between the first and the second prune
        trainer.train_step()
    mask = torch.sigmoid(trainer.params["mask"].detach())
    assert float(mask.std()) > 0  # learned, not the initial value any more
    from gstrim.prune.keep import prune_mask_count
    from gstrim.prune.scores import gradient_score

    live = trainer.scene()
    gradient = gradient_score(live, dataset.train, background=dataset.background, device="cpu")
    removed = prune_mask_count(mask, gradient, len(live) - strategy.survivors[1])
    strategy.step_begin(trainer.params, trainer.optimizers, trainer.state, 4, trainer.generator)  # the 2nd prune
    assert torch.equal(trainer.params["means"].detach(), live.means[~removed])  # by the mask OR the gradient
    while trainer.step < config.iterations:
        trainer.train_step()
        counts.append(len(trainer))
    assert counts[3] == strategy.survivors[1] and counts[4] == counts[-1] == strategy.survivors[2]
    assert not parameterization.active and parameterization.penalty(trainer.params) is None
    final = trainer.scene()  # after the last prune the scene is the raw parameters: the gates were baked in
    assert torch.equal(final.opacities, trainer.params["opacities"].detach().cpu())
    with pytest.raises(Exception, match="mask_weight"):
        TrimConfig(mask_weight=0.1, one_shot=True, target_removal=0.5).validate()


def test_baking_the_gates_keeps_the_rendered_opacity(rng):
    params = {"opacities": torch.tensor(rng.normal(0, 2, 50)), "mask": torch.tensor(rng.normal(2, 2, 50))}
    before = torch.sigmoid(masked_opacities(params["opacities"], params["mask"]))
    bake(params)
    torch.testing.assert_close(torch.sigmoid(params["opacities"]), before, rtol=1e-9, atol=1e-12)
