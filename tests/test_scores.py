"""Pruning scores beyond the paper (LightGaussian, PUP-3DGS) against autograd of the dense float64 renderer."""

from __future__ import annotations

import pytest
import torch
from test_render import make_camera, make_scene

from gstrim import devices
from gstrim.prune.scores import SCORES, lightgaussian_score, pup_score, spatial_fisher
from gstrim.render import pixel_statistics
from gstrim.render.reference import render_dense
from gstrim.scene import SH_C0, GaussianScene


@pytest.fixture(params=["cpu-kernels", "device-path"], autouse=True)
def statistics_path(request, monkeypatch):
    """Every test of this file on both paths of `pixel_statistics`: the Numba kernel and the torch path a GPU
    run takes (`render.pair_statistics`), here on the CPU."""
    if request.param == "device-path":
        from gsplat_stand_ins import run_gsplat_on_cpu

        from gstrim.prune import scores

        run_gsplat_on_cpu(monkeypatch)  # the gradient score renders with gsplat there
        monkeypatch.setattr(devices, "uses_cpu_kernels", lambda device: False)
        monkeypatch.setattr(scores, "resolve_device", lambda device: torch.device("cpu"))  # not CUDA: no GPU here
    return request.param


def positive_colour_scene(rng, n: int) -> GaussianScene:
    # SH degree 0 with colours above the clamp at 0: the image depends on the mean only through the screen
    # position and footprint, the path the PUP score follows
    return make_scene(rng, n=n, degree=0, sh0=rng.uniform(0.0, 1.5, (n, 1, 3)))


def dense_image(scene: GaussianScene, camera, background, **params):
    p = {**scene.params(), **params}
    return render_dense(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"], p["shN"], camera.viewmat,
                        camera.K, camera.width, camera.height, 0, background)["image"]


def reference_statistics(scene: GaussianScene, camera, background):
    """(hits [N], max blending weight [N], Fisher [N, 6, 6]) by full Jacobians of the dense image."""
    n = len(scene)
    jac_m, jac_s = torch.func.jacfwd(lambda m, s: dense_image(scene, camera, background, means=m, scales=s),
                                     argnums=(0, 1))(scene.means.detach(), scene.scales.detach())
    g = torch.cat([jac_m, jac_s], dim=-1).reshape(-1, n, 6)  # [pixels x channels, N, 6]
    fisher = torch.einsum("pni,pnj->nij", g, g)
    jac_c = torch.func.jacfwd(lambda c: dense_image(scene, camera, background, sh0=c))(scene.sh0.detach())
    red = jac_c[..., 0, :, 0, 0].reshape(-1, n)  # d red / d red DC = blending weight x SH C0
    hits = (red != 0).sum(0)  # blended pixels
    return hits, red.amax(0) / SH_C0, fisher


def test_pixel_statistics_and_fisher_match_dense_reference(rng):
    scene = positive_colour_scene(rng, 14)
    background = torch.tensor(rng.uniform(0, 1, 3))
    cameras = [make_camera(rng, width=26, height=22) for _ in range(2)]
    expected_hits = torch.zeros(len(scene), dtype=torch.long)
    expected_fisher = torch.zeros(len(scene), 6, 6, dtype=torch.float64)
    for cam in cameras:
        hits, max_weight, fisher = reference_statistics(scene, cam, background)
        stats = pixel_statistics(scene, cam, background=background)
        assert torch.equal(stats.hits.long(), hits)
        assert torch.allclose(stats.max_weight.double(), max_weight, atol=1e-12)
        expected_hits += hits
        expected_fisher += fisher
    assert expected_hits.sum() > 0
    got = spatial_fisher(scene, cameras, background=background)
    scale = expected_fisher.abs().amax(dim=(1, 2)).clamp_min(1e-30)[:, None, None]
    assert torch.allclose(got / scale, expected_fisher / scale, atol=1e-9)


def test_lightgaussian_score_is_hits_times_opacity_times_volume_weight(rng):
    scene = positive_colour_scene(rng, 20)
    cam = make_camera(rng, width=30, height=24)
    hits = pixel_statistics(scene, cam).hits.double()
    volume = torch.exp(scene.scales.detach()).prod(1)
    v90 = volume.sort(descending=True).values[18]
    expected = hits * torch.sigmoid(scene.opacities.detach()) * (volume / v90) ** 0.1
    assert torch.allclose(lightgaussian_score(scene, [cam]).double(), expected, rtol=1e-5)


def never_drawn(scene: GaussianScene, index: int) -> GaussianScene:
    """The scene with Gaussian `index` below the 1/255 opacity every renderer skips."""
    opacities = scene.opacities.detach().clone()
    opacities[index] = -10.0
    return GaussianScene(**{**scene.params(), "opacities": opacities})


def test_pup_score_ranks_unseen_gaussians_last(rng):
    scene = never_drawn(positive_colour_scene(rng, 10), 0)
    cams = [make_camera(rng, width=26, height=22) for _ in range(3)]
    score = pup_score(scene, cams)
    assert torch.isfinite(score).all()
    assert score[0] == score.min()  # at the floor (other unseen Gaussians may share it)
    seen = pixel_statistics(scene, cams[0]).hits > 0
    assert bool(seen.any()) and torch.all(score[seen] > score[0])


def test_every_registered_score_ranks_a_gaussian_no_view_draws_last(rng):
    scene = never_drawn(positive_colour_scene(rng, 8), 3)
    cam = make_camera(rng, width=20, height=16)
    cam.set_image(torch.zeros(16, 20, 3, dtype=torch.float64))
    seen = pixel_statistics(scene, cam).hits > 0
    assert bool(seen.any())
    for name, entry in SCORES.items():
        out = entry.fn(scene, [cam], background=torch.zeros(3, dtype=torch.float64), device="cpu")
        assert out.shape == (len(scene),) and torch.isfinite(out).all(), name
        assert out[3] == out.min() and torch.all(out[seen] > out[3]), name


def test_a_new_score_is_one_registration(rng):
    from gstrim.prune.scores import register_score
    from gstrim.prune.strategy import TrimConfig, TrimStrategy

    scene = positive_colour_scene(rng, 12)
    register_score("toy_index", lambda scene, cameras, **_: torch.arange(len(scene), dtype=torch.float32))
    try:
        config = TrimConfig(score="toy_index", target_count=5, steps=1, every=1, finetune=0)
        config.validate()
        strategy = TrimStrategy(config, [make_camera(rng, width=8, height=8)], None, len(scene), scene.sh_degree)
        params = {k: torch.nn.Parameter(v.detach().clone().float()) for k, v in scene.params().items()}
        state = strategy.initialize_state(len(scene))
        strategy.step_begin(params, {}, state, 0, torch.Generator())
        # the toy score ranks by index: the 5 highest indices survive
        torch.testing.assert_close(params["means"].detach(), scene.means.detach()[7:].float())
    finally:
        SCORES.pop("toy_index")


def test_visibility_is_low_for_an_opaque_gaussian_hidden_behind_another(rng):
    """Two opaque Gaussians on the view axis: the one behind keeps its opacity but shows almost nothing."""
    from gstrim.prune.scores import visibility_score

    scene = positive_colour_scene(rng, 2)
    cam = make_camera(rng, width=26, height=22)
    params = scene.params()
    ahead = cam.viewmat[:3, :3].T @ torch.tensor([0.0, 0.0, 1.0], dtype=cam.viewmat.dtype)
    campos = -cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3]
    params["means"] = torch.stack([campos + 3 * ahead, campos + 5 * ahead]).to(params["means"].dtype)
    params["scales"] = torch.tensor([[-0.5] * 3, [-2.0] * 3], dtype=params["scales"].dtype)  # the front one covers
    params["opacities"] = torch.full_like(params["opacities"], 6.0)  # sigmoid ~ 0.998
    weight = visibility_score(GaussianScene(**params), [cam])
    assert weight[0] > 0.95 and weight[1] < 0.02


def test_pixel_statistics_without_fisher_give_the_same_counts_and_weights(rng):
    scene = positive_colour_scene(rng, 12)
    cam = make_camera(rng, width=24, height=20)
    full, lean = pixel_statistics(scene, cam), pixel_statistics(scene, cam, fisher=False)
    assert torch.equal(full.hits, lean.hits) and torch.equal(full.max_weight, lean.max_weight)
    assert lean.fisher2d.shape == (12, 0) and full.fisher2d.abs().sum() > 0

