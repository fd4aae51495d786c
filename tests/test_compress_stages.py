"""c3dgs stages: covariance <-> rotation and scale, sensitivities against the dense reference, weighted
k-means on data with known clusters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_render import make_camera, make_scene

from gstrim.compress.covariance import normalized_covariance, rotation_and_scale, rotmat_to_quat, symmetric
from gstrim.compress.sensitivity import sensitivity
from gstrim.render.project import covariance_3d, quat_to_rotmat
from gstrim.render.reference import render_dense


def test_rotation_and_scale_round_trip(rng):
    scene = make_scene(rng, 200)
    quats, scales = scene.normalized_quats().detach(), scene.scales.detach()
    cov = covariance_3d(quats, scales)
    six = torch.stack([cov[:, i, j] for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))], -1)
    q, s = rotation_and_scale(six)
    torch.testing.assert_close(covariance_3d(q, torch.log(s)), cov, rtol=1e-9, atol=1e-12)
    assert torch.all(q[:, 0] >= 0)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(200, dtype=q.dtype))
    # quaternions of rotation matrices, every branch of the method (w, x, y, z largest)
    for axis in range(4):
        target = torch.from_numpy(rng.normal(size=(50, 4)))
        target[:, axis] += 5 * torch.sign(target[:, axis])
        target = target / target.norm(dim=-1, keepdim=True)
        target = target * torch.where(target[:, :1] < 0, -1.0, 1.0)
        torch.testing.assert_close(rotmat_to_quat(quat_to_rotmat(target)), target)
    unit = torch.nn.functional.normalize(torch.exp(scales), dim=-1)
    torch.testing.assert_close(symmetric(normalized_covariance(quats, scales)).diagonal(dim1=1, dim2=2).sum(-1),
                               (unit**2).sum(-1))


@pytest.mark.parametrize("chunk", [None, 7])
def test_sensitivity_against_autograd_of_the_dense_reference(rng, chunk):
    """In one piece and in chunks of 7 Gaussians (the projection's graph per chunk), the same gradients."""
    scene = make_scene(rng, 40)
    cameras = [make_camera(rng, 32, 24) for _ in range(3)]
    ours = sensitivity(scene, cameras, chunk=chunk)

    with torch.no_grad():
        norm2 = torch.exp(scene.scales).square().sum(-1)
        six0 = normalized_covariance(scene.quats, scene.scales)
    six = six0.clone().requires_grad_(True)
    sh0 = scene.sh0.detach().clone().requires_grad_(True)
    shN = scene.shN.detach().clone().requires_grad_(True)
    g_color = torch.zeros(40, 16, 3, dtype=torch.float64)
    g_shape = torch.zeros(40, 6, dtype=torch.float64)
    for cam in cameras:
        quats, axes = rotation_and_scale(six * norm2[:, None])  # the covariance as the dense reference takes it
        ref = render_dense(scene.means.detach(), torch.log(axes), quats, scene.opacities.detach(), sh0, shN,
                           cam.viewmat, cam.K, cam.width, cam.height, 3, torch.zeros(3, dtype=torch.float64))
        g0, gN, gs = torch.autograd.grad(ref["image"].sum(), (sh0, shN, six))
        g_color += torch.cat([g0, gN], 1).abs()
        g_shape += gs.abs()
    pixels = sum(c.width * c.height for c in cameras)
    torch.testing.assert_close(ours.color, g_color.flatten(1).amax(1) / pixels, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(ours.shape, g_shape.amax(1) / pixels, rtol=1e-5, atol=1e-10)
    assert (ours.color > 0).sum() > 10


@pytest.mark.parametrize("cpu_kernels", [True, False], ids=["cpu-kernels", "device-path"])
def test_weighted_kmeans_finds_known_clusters(rng, monkeypatch, cpu_kernels):
    from gstrim import devices
    from gstrim.kmeans import nearest, weighted_kmeans

    monkeypatch.setattr(devices, "uses_cpu_kernels", lambda device: cpu_kernels)  # the seeding's two paths

    corners = torch.tensor([[(i >> b) & 1 for b in range(3)] for i in range(8)], dtype=torch.float32)
    centres = torch.cat([20 * corners, torch.from_numpy(rng.normal(0, 1, (8, 2))).float()], 1)  # separated
    labels = torch.from_numpy(rng.integers(0, 8, 4000))
    x = centres[labels] + 0.1 * torch.randn(4000, 5, generator=torch.Generator().manual_seed(1))
    found = weighted_kmeans(x, torch.ones(4000), 8, steps=60, batch=1024, generator=torch.Generator().manual_seed(0))
    # every true centre has a centroid next to it
    dist = torch.cdist(centres, found)
    assert float(dist.min(1).values.max()) < 0.2
    assign = nearest(x, found)
    torch.testing.assert_close(assign, torch.cdist(x, found).argmin(1))
    # importance pulls a centroid to the heavy member of a pair of points
    pair = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    one = weighted_kmeans(pair.repeat(50, 1), torch.tensor([9.0, 1.0]).repeat(50), 1, steps=200, batch=100,
                          generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(one, torch.tensor([[0.1, 0.0]]), atol=1e-3, rtol=0)


def test_chunked_sensitivity_equals_one_piece(rng):
    scene = make_scene(rng, 300)
    cameras = [make_camera(rng, 40, 30) for _ in range(2)]
    whole, parts = sensitivity(scene, cameras, chunk=10**6), sensitivity(scene, cameras, chunk=64)
    torch.testing.assert_close(parts.color, whole.color, rtol=1e-6, atol=0)
    torch.testing.assert_close(parts.shape, whole.shape, rtol=1e-6, atol=0)


@pytest.mark.parametrize("degree", [0, 3])
def test_codebooks_with_a_dc_of_its_own_keep_every_dc_and_cluster_the_rest(rng, degree):
    from gstrim.compress.codebooks import ClusterSettings, build_codebooks
    from gstrim.compress.sensitivity import Sensitivity

    g = torch.Generator().manual_seed(0)
    scene = make_scene(rng, 400, degree, dtype=torch.float32)
    sens = Sensitivity(torch.rand(400, generator=g), torch.rand(400, generator=g))
    settings = ClusterSettings(size=64, keep=0.05, steps=5, batch=256)
    cs, report = build_codebooks(scene, sens, settings, settings, g, shared_dc=False)
    assert not cs.shared_dc and torch.equal(cs.sh_dc, scene.sh0)  # every Gaussian's DC, unclustered
    if degree == 0:
        assert cs.sh_index is None and cs.sh_rest.shape == (400, 0, 3)
    else:
        assert cs.sh_entries == 64 + 20 and cs.sh_index.max() < cs.sh_entries  # 5 % kept of their own
        torch.testing.assert_close(cs.decode().sh0, scene.sh0)
    shared, _ = build_codebooks(scene, sens, settings, settings, torch.Generator().manual_seed(0))
    assert shared.shared_dc and len(shared.sh_dc) == shared.sh_entries == 64 + 20


@pytest.mark.parametrize("share", [0.1, 0.25, 0.5])
def test_sh_share_keeps_view_dependent_colour_for_the_most_sensitive(rng, share):
    """`--sh-share F` keeps the higher bands of the F most rest-sensitive Gaussians; every other one is DC only."""
    from gstrim.compress.codebooks import ClusterSettings, build_codebooks
    from gstrim.compress.sensitivity import Sensitivity

    n = 400
    g = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    scene = make_scene(rng, n, 3, dtype=torch.float32)
    rest = torch.from_numpy(rng.permutation(n).astype(np.float32) + 1)  # distinct, all alive
    sens = Sensitivity(torch.rand(n, generator=g) + 0.1, torch.rand(n, generator=g) + 0.1, rest)
    settings = ClusterSettings(size=16, keep=0.0, steps=3, batch=256)
    cs, report = build_codebooks(scene, sens, settings, settings, g, shared_dc=False, sh_share=share)
    with_sh = cs.sh_index >= 0
    top = torch.argsort(rest, descending=True)[:round(share * n)]
    assert int(with_sh.sum()) == len(top) and bool(with_sh[top].all())
    assert report.dc_only == n - len(top)
