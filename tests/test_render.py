"""The CPU rasterizer against the dense float64 reference: forward and every gradient, on fresh random
scenes each run, plus the edge cases of the 3DGS math."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gstrim.camera import Camera
from gstrim.render import rasterize
from gstrim.render.reference import render_dense
from gstrim.render.sh import sh_basis
from gstrim.scene import GaussianScene, num_sh_rest


def make_camera(rng, width=48, height=40, dtype=torch.float64) -> Camera:
    eye = rng.normal(size=3)
    eye = 2.5 * eye / np.linalg.norm(eye)
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    viewmat = np.eye(4)
    viewmat[:3, :3], viewmat[:3, 3] = R, -R @ eye
    f = rng.uniform(40, 60)
    cx, cy = width / 2 + rng.uniform(-3, 3), height / 2 + rng.uniform(-3, 3)
    K = np.array([[f, 0, cx], [0, f * rng.uniform(0.9, 1.1), cy], [0, 0, 1]])
    return Camera("test", width, height, torch.tensor(K, dtype=dtype), torch.tensor(viewmat, dtype=dtype))


def make_scene(rng, n=60, degree=3, dtype=torch.float64, **overrides) -> GaussianScene:
    arrays = dict(
        means=rng.normal(0, 0.5, (n, 3)), scales=rng.normal(-2.5, 0.5, (n, 3)), quats=rng.normal(size=(n, 4)),
        opacities=rng.normal(0.5, 1.5, n), sh0=rng.normal(size=(n, 1, 3)),
        shN=rng.normal(0, 0.2, (n, num_sh_rest(degree), 3)),
    )
    arrays.update(overrides)
    scene = GaussianScene.from_numpy(**arrays)
    return GaussianScene(**{k: v.to(dtype).requires_grad_(True) for k, v in scene.params().items()})


def compare(scene: GaussianScene, camera: Camera, rng, degree=None, check_grads=True):
    """Render with the CPU backend and the dense reference (float64); compare outputs and gradients."""
    degree = scene.sh_degree if degree is None else degree
    bg = torch.tensor(rng.uniform(size=3), dtype=torch.float64)
    out = rasterize(scene, camera, sh_degree=degree, background=bg)
    ref = render_dense(*scene.params().values(), camera.viewmat, camera.K, camera.width, camera.height, degree, bg)
    assert torch.equal(out.radii, ref["radii"])
    torch.testing.assert_close(out.image, ref["image"], rtol=0, atol=1e-10)
    torch.testing.assert_close(out.alpha, ref["alpha"], rtol=0, atol=1e-10)
    if not check_grads:
        return out, ref
    w_img = torch.randn(camera.height, camera.width, 3, dtype=torch.float64)
    w_alpha = torch.randn(camera.height, camera.width, dtype=torch.float64)
    out.means2d.retain_grad()
    ((out.image * w_img).sum() + (out.alpha * w_alpha).sum()).backward()
    ours = {k: v.grad.clone() for k, v in scene.params().items()}
    ours["means2d"] = out.means2d.grad.clone()
    for v in scene.params().values():
        v.grad = None
    ref["means2d"].retain_grad()
    ((ref["image"] * w_img).sum() + (ref["alpha"] * w_alpha).sum()).backward()
    theirs = {k: v.grad for k, v in scene.params().items()}
    theirs["means2d"] = ref["means2d"].grad
    for name, expected in theirs.items():
        if expected.numel() == 0:
            continue
        # floor: gradients that are zero in exact arithmetic (e.g. rotations of isotropic Gaussians) are
        # rounding noise (~1e-16) on both sides
        scale = expected.abs().max().clamp_min(1e-8)
        error = float((ours[name] - expected).abs().max() / scale)
        assert error <= 1e-4, f"{name}: relative gradient error {error:.2e}"
    return out, ref


def test_random_scenes_forward_and_gradients(rng):
    for degree in (0, 1, 3):
        compare(make_scene(rng, degree=degree), make_camera(rng), rng)


def test_float32_forward_matches_reference_away_from_thresholds(rng):
    scene64 = make_scene(rng, n=120)
    camera = make_camera(rng)
    scene32 = GaussianScene(**{k: v.detach().float() for k, v in scene64.params().items()})
    bg = torch.tensor([0.1, 0.5, 0.9])
    out = rasterize(scene32, camera, background=bg)
    ref = render_dense(*[v.detach() for v in scene64.params().values()], camera.viewmat, camera.K,
                       camera.width, camera.height, 3, bg.double())
    assert out.image.dtype == torch.float32
    stable = ~ref["fragile"]
    error = (out.image.double() - ref["image"]).abs().amax(-1)
    assert float(error[stable].max()) <= 1e-5
    assert float((out.alpha.double() - ref["alpha"]).abs()[stable].max()) <= 1e-5


def test_float32_gradients_match_float64(rng):
    # the float32 kernels use a polynomial exp and their own arithmetic: forward and backward must still
    # agree on which pixels each Gaussian was blended into, or gradients drift far beyond float32 rounding
    scene64 = make_scene(rng, n=120)
    camera = make_camera(rng)
    scene32 = GaussianScene(**{k: v.detach().float().requires_grad_(True) for k, v in scene64.params().items()})
    w = torch.randn(camera.height, camera.width, 3, dtype=torch.float64)
    for scene in (scene64, scene32):
        (rasterize(scene, camera).image.double() * w).sum().backward()
    for name, p64 in scene64.params().items():
        p32 = getattr(scene32, name)
        error = float((p32.grad.double() - p64.grad).abs().max() / p64.grad.abs().max().clamp_min(1e-8))
        assert error <= 1e-3, f"{name}: float32 gradient off by {error:.1e} relative"


def test_behind_camera_straddling_and_offscreen(rng):
    camera = make_camera(rng)
    cam_center = torch.as_tensor(camera.center)
    forward = camera.viewmat[2, :3]
    n = 40
    means = rng.normal(0, 0.4, (n, 3))
    means[:5] = (cam_center - 1.0 * forward).numpy() + rng.normal(0, 0.05, (5, 3))  # behind
    means[5:10] = (cam_center + 0.005 * forward).numpy() + rng.normal(0, 0.001, (5, 3))  # near plane
    means[10:15] = (cam_center + 2.5 * forward + 5.0 * camera.viewmat[0, :3]).numpy()  # far off to the side
    scales = rng.normal(-2.5, 0.5, (n, 3))
    scales[5:10] = -0.5  # large: straddle the near plane
    scene = make_scene(rng, n=n, means=means, scales=scales)
    out, _ = compare(scene, camera, rng)
    assert not out.visible[:5].any() and not out.visible[10:15].any()


def test_huge_tiny_scales_and_degenerate_quaternions(rng):
    n = 30
    scales = rng.normal(-2.5, 0.5, (n, 3))
    scales[:5] = rng.uniform(-12, -9, (5, 3))  # sub-pixel: the 0.3 px dilation dominates
    scales[5:8] = rng.uniform(0.5, 1.2, (3, 3))  # covers the whole image
    quats = rng.normal(size=(n, 4)) * rng.uniform(0.01, 50, (n, 1))  # unnormalised
    quats[8] = 0.0  # degenerate: treated as identity
    compare(make_scene(rng, n=n, scales=scales, quats=quats), make_camera(rng), rng)


def test_empty_tiles_and_empty_scene(rng):
    camera = make_camera(rng, 64, 64)
    scene = make_scene(rng, n=3, scales=np.full((3, 3), -4.0))
    out, _ = compare(scene, camera, rng)
    assert (out.alpha == 0).float().mean() > 0.5  # most tiles hold nothing
    empty = make_scene(rng, n=0)
    out = rasterize(empty, camera, background=(0.2, 0.4, 0.6))
    assert torch.allclose(out.image, torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64).expand(64, 64, 3))


def test_early_stop_and_alpha_cap(rng):
    n = 50
    means = rng.normal(0, 0.05, (n, 3))  # a dense, opaque clump: transmittance runs out
    opacities = np.full(n, 8.0)  # sigmoid ~ 0.9997: alpha is capped at 0.99
    opacities[::3] = rng.normal(0, 1, len(opacities[::3]))
    scene = make_scene(rng, n=n, means=means, opacities=opacities, scales=np.full((n, 3), -1.5))
    out, _ = compare(scene, make_camera(rng), rng)
    assert float(out.alpha.detach().max()) > 0.999


def test_normalized_means2d_gradient_units(rng):
    camera = make_camera(rng)
    scene = make_scene(rng)
    out = rasterize(scene, camera)
    out.means2d.retain_grad()
    out.image.sum().backward()
    g = out.normalized_means2d_grad()
    torch.testing.assert_close(g[:, 0], out.means2d.grad[:, 0] * camera.width / 2)
    torch.testing.assert_close(g[:, 1], out.means2d.grad[:, 1] * camera.height / 2)


def test_sh_basis_is_orthonormal():
    # Fibonacci sphere quadrature: integral of Y_i Y_j over the sphere = delta_ij
    m = 40000
    i = np.arange(m) + 0.5
    z = 1 - 2 * i / m
    phi = np.pi * (1 + 5**0.5) * i
    dirs = torch.tensor(np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], -1))
    Y = sh_basis(3, dirs)
    gram = (Y.T @ Y) * (4 * np.pi / m)
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=2e-3, rtol=0)


def test_rasterize_rejects_unknown_backend(rng):
    with pytest.raises(ValueError):
        rasterize(make_scene(rng, n=2), make_camera(rng), backend="opengl")


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_fused_gaussian_stage_matches_the_torch_path(rng, degree):
    """The Numba projection + SH kernels against `project` and `sh_to_rgb` under autograd: outputs and every
    parameter gradient for random upstream gradients, with Gaussians spread past the field of view (where
    the Jacobian's clamp is active) and some behind the camera."""
    from gstrim.render.cpu import ProjectAndShade
    from gstrim.render.project import project
    from gstrim.render.sh import sh_to_rgb

    scene = make_scene(rng, n=200, degree=3, means=rng.normal(0, 1.5, (200, 3)))
    cam = make_camera(rng)
    params = scene.params()
    ours = ProjectAndShade.apply(scene.means, scene.quats, scene.scales, scene.sh0, scene.shN, cam.viewmat, cam.K,
                                 cam.width, cam.height, degree)
    proj = project(scene.means, scene.quats, scene.scales, cam.viewmat, cam.K, cam.width, cam.height)
    campos = -cam.viewmat[:3, :3].T @ cam.viewmat[:3, 3]
    colors = sh_to_rgb(degree, scene.sh0, scene.shN, scene.means - campos)
    theirs = (proj.means2d, proj.conics, colors, proj.depths, proj.radii)
    assert torch.equal(ours[4], theirs[4]) and bool((ours[4] > 0).any()) and bool((ours[4] == 0).any())
    for a, b in zip(ours[:4], theirs[:4], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    drawn = (ours[4] > 0).double()[:, None]
    upstream = [torch.from_numpy(rng.normal(size=t.shape)) for t in ours[:3]]
    upstream[0], upstream[1] = upstream[0] * drawn, upstream[1] * drawn  # the pixel stage's gradients
    grads = []
    for outputs in (ours, theirs):
        loss = sum((o * u).sum() for o, u in zip(outputs[:3], upstream, strict=True))
        grads.append(torch.autograd.grad(loss, list(params.values()), allow_unused=True))
    for name, a, b in zip(params, *grads, strict=True):
        if a is None and b is None:  # opacities: neither stage reads them
            continue
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        scale = b.abs().max().clamp_min(1e-8)
        assert float((a - b).abs().max() / scale) < 1e-9, name


def test_depth_order_is_a_stable_sort_of_the_drawn_gaussians(rng):
    from gstrim.render.cpu import depth_order

    depths = rng.uniform(0.01, 1e4, 5000).astype(np.float32)
    depths[rng.integers(0, 5000, 1000)] = depths[7]  # ties keep id order
    radii = rng.integers(0, 3, 5000).astype(np.int32)
    visible = np.nonzero(radii > 0)[0]
    expected = visible[np.argsort(depths[visible], kind="stable")]
    np.testing.assert_array_equal(depth_order(depths, radii), expected)
    np.testing.assert_array_equal(depth_order(depths.astype(np.float64), radii), expected)
