"""The Trimming-the-Fat keep rule (eq. 5) on hand-made populations, and removal schedules (eq. 6)."""

from __future__ import annotations

import pytest
import torch

from gstrim.errors import GstrimError
from gstrim.prune.keep import prune_mask_count, prune_mask_gamma, removal_order, survivors_schedule
from gstrim.scene import GaussianScene


def strict_rule(opacity, gradient, gamma):
    """The authors' `gradient_aware_prune`: remove when both scores are strictly below their quantile."""
    return (opacity < torch.quantile(opacity, gamma)) & (gradient < torch.quantile(gradient, gamma))


@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.225, 0.425, 0.6, 0.95])
def test_equals_authors_rule_without_ties(rng, gamma):
    n = int(rng.integers(50, 400))
    opacity = torch.from_numpy(rng.random(n))
    gradient = torch.from_numpy(rng.random(n) * 0.5 + 0.5 * opacity.numpy())  # correlated, as in 3DGS
    assert torch.equal(prune_mask_gamma(opacity, gradient, gamma), strict_rule(opacity, gradient, gamma))


def test_zero_gradients_do_not_disable_pruning(rng):
    # 70 % of the Gaussians were never seen: gradient exactly 0, so Q_gradient(0.5) = 0 and the strict
    # rule removes nothing; the rank rule removes the low-opacity ones among the unseen.
    n = 200
    opacity = torch.from_numpy(rng.random(n))
    gradient = torch.from_numpy(rng.random(n))
    gradient[:140] = 0.0
    assert not strict_rule(opacity, gradient, 0.5).any()
    mask = prune_mask_gamma(opacity, gradient, 0.5)
    k = 100  # ceil(0.5 x 199)
    assert 0 < mask.sum() <= k
    assert torch.all(gradient[mask] == 0)
    # every removed Gaussian has a lower opacity than every unseen one kept
    unseen_kept = (~mask) & (gradient == 0)
    assert opacity[mask].max() < opacity[unseen_kept].min()


def test_all_equal_opacities_fall_back_on_gradients(rng):
    n = 101
    opacity = torch.full((n,), 0.7)
    gradient = torch.from_numpy(rng.permutation(n).astype(float))
    mask = prune_mask_gamma(opacity, gradient, 0.3)
    # opacity ranks follow the gradient (tie-break), so both low sets are the 30 lowest gradients
    assert mask.sum() == 30 and torch.all(gradient[mask] < 30)


def test_all_equal_everything_is_deterministic():
    opacity, gradient = torch.ones(10), torch.ones(10)
    assert torch.equal(prune_mask_gamma(opacity, gradient, 0.5), torch.arange(10) < 5)


def test_count_is_exact_and_nested(rng):
    n = 150
    opacity = torch.from_numpy(rng.integers(0, 5, n).astype(float))  # many ties
    gradient = torch.from_numpy(rng.integers(0, 3, n).astype(float))
    previous = torch.zeros(n, dtype=torch.bool)
    for count in range(n + 1):
        mask = prune_mask_count(opacity, gradient, count)
        assert int(mask.sum()) == count
        assert torch.all(mask >= previous)  # what a smaller target removes, a larger one removes too
        previous = mask
    with pytest.raises(ValueError):
        prune_mask_count(opacity, gradient, n + 1)


def test_count_agrees_with_gamma(rng):
    n = 300
    opacity, gradient = torch.from_numpy(rng.random(n)), torch.from_numpy(rng.random(n))
    for gamma in (0.2, 0.5, 0.8):
        mask = prune_mask_gamma(opacity, gradient, gamma)
        assert torch.equal(prune_mask_count(opacity, gradient, int(mask.sum())), mask)
    order = removal_order(opacity, gradient)
    assert sorted(order.tolist()) == list(range(n))


def test_survivors_schedule():
    steps = survivors_schedule(100_000, 10, removal=0.8)
    assert len(steps) == 10 and steps[-1] == 20_000
    assert all(a > b for a, b in zip([100_000, *steps], steps, strict=False))
    per_step = 1 - (1 - 0.8) ** 0.1  # eq. 6
    assert steps[0] == round(100_000 * (1 - per_step))
    assert survivors_schedule(1000, 3, count=10)[-1] == 10
    assert survivors_schedule(7, 1, removal=0.5) == [4]


@pytest.mark.parametrize("kwargs", [dict(removal=1.0), dict(removal=-0.1), dict(count=0), dict(count=2000),
                                    dict(removal=0.9999)])
def test_schedule_errors(kwargs):
    with pytest.raises(GstrimError):
        survivors_schedule(1000, 5, **kwargs)


@pytest.mark.parametrize("gamma", [-0.1, 1.0, 1.5])
def test_gamma_out_of_range(gamma):
    with pytest.raises(GstrimError, match="gamma"):
        prune_mask_gamma(torch.rand(10), torch.rand(10), gamma)


def test_gradient_score_is_the_densification_statistic(rng):
    from test_render import make_camera, make_scene

    from gstrim.prune.scores import gradient_score, opacity_score
    from gstrim.render import rasterize
    from gstrim.train.loss import photometric_loss

    scene = make_scene(rng, 80, 1, torch.float32)
    scene = GaussianScene(**{**scene.params(), "means": torch.cat([scene.means[:-1], torch.tensor([[0, 0, 50.0]])])})
    cams = [make_camera(rng, 32, 24, torch.float32) for _ in range(3)]
    for cam in cams:
        cam.set_image(torch.from_numpy(rng.random((24, 32, 3)).astype("float32")))
    score = gradient_score(scene, cams, device="cpu")
    total, count = torch.zeros(80), torch.zeros(80)
    for cam in cams:
        s = GaussianScene(**{k: v.clone().requires_grad_(True) for k, v in scene.params().items()})
        out = rasterize(s, cam)
        out.means2d.retain_grad()
        photometric_loss(out.image, cam.image).backward()
        g = out.normalized_means2d_grad().norm(dim=-1)
        total[out.visible] += g[out.visible]
        count[out.visible] += 1
    expected = torch.where(count > 0, total / count.clamp_min(1), torch.zeros(80))
    torch.testing.assert_close(score, expected, rtol=1e-5, atol=1e-9)
    assert score.shape == (80,) and (score > 0).any()
    torch.testing.assert_close(opacity_score(scene), torch.sigmoid(scene.opacities))
