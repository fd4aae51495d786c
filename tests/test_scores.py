"""Pruning scores beyond the paper (LightGaussian, PUP-3DGS) against autograd of the dense float64 renderer."""

from __future__ import annotations

import torch
from test_render import make_camera, make_scene

from gstrim.prune.scores import SCORES, lightgaussian_score, pup_score, spatial_fisher
from gstrim.render import pixel_statistics
from gstrim.render.reference import render_dense
from gstrim.scene import GaussianScene


def positive_colour_scene(rng, n: int) -> GaussianScene:
    # SH degree 0 with colours above the clamp at 0: the image depends on the mean only through the screen
    # position and footprint, the path the PUP score follows
    return make_scene(rng, n=n, degree=0, sh0=rng.uniform(0.0, 1.5, (n, 1, 3)))


def dense_image(scene: GaussianScene, camera, background, **params):
    p = {**scene.params(), **params}
    return render_dense(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"], p["shN"], camera.viewmat,
                        camera.K, camera.width, camera.height, 0, background)["image"]


def reference_statistics(scene: GaussianScene, camera, background):
    """(hits [N], Fisher [N, 6, 6]) by full Jacobians of the dense image."""
    n = len(scene)
    jac_m, jac_s = torch.func.jacfwd(lambda m, s: dense_image(scene, camera, background, means=m, scales=s),
                                     argnums=(0, 1))(scene.means.detach(), scene.scales.detach())
    g = torch.cat([jac_m, jac_s], dim=-1).reshape(-1, n, 6)  # [pixels x channels, N, 6]
    fisher = torch.einsum("pni,pnj->nij", g, g)
    jac_c = torch.func.jacfwd(lambda c: dense_image(scene, camera, background, sh0=c))(scene.sh0.detach())
    hits = (jac_c[..., 0, :, 0, 0] != 0).reshape(-1, n).sum(0)  # blended pixels: red depends on red DC
    return hits, fisher


def test_pixel_statistics_and_fisher_match_dense_reference(rng):
    scene = positive_colour_scene(rng, 14)
    background = torch.tensor(rng.uniform(0, 1, 3))
    cameras = [make_camera(rng, width=26, height=22) for _ in range(2)]
    expected_hits = torch.zeros(len(scene), dtype=torch.long)
    expected_fisher = torch.zeros(len(scene), 6, 6, dtype=torch.float64)
    for cam in cameras:
        hits, fisher = reference_statistics(scene, cam, background)
        assert torch.equal(pixel_statistics(scene, cam, background=background).hits.long(), hits)
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


def test_pup_score_ranks_unseen_gaussians_last(rng):
    scene = positive_colour_scene(rng, 10)
    far = scene.means.detach().clone()
    far[0] = torch.tensor([40.0, 40.0, 40.0])  # outside every view
    scene = GaussianScene(**{**scene.params(), "means": far})
    cams = [make_camera(rng, width=26, height=22) for _ in range(3)]
    score = pup_score(scene, cams)
    assert torch.isfinite(score).all()
    assert int(score.argmin()) == 0


def test_every_score_has_one_signature(rng):
    scene = positive_colour_scene(rng, 8)
    cam = make_camera(rng, width=20, height=16)
    cam.set_image(torch.zeros(16, 20, 3, dtype=torch.float64))
    for name, score in SCORES.items():
        out = score(scene, [cam], background=torch.zeros(3, dtype=torch.float64), device="cpu")
        assert out.shape == (len(scene),), name
