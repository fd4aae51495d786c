"""Numba kernels of the CPU rasterizer's per-Gaussian stage: EWA projection (Zwicker et al. 2001, as Kerbl
et al. 2023 use it) and view-dependent SH colour, fused, with their analytic backward.

The math is that of `render/project.py` and `render/sh.py` (the torch reference path, which the tests
compare against): camera-space mean p = R m + t; the Jacobian evaluated at p clamped to 1.3x the field of
view; 2-D covariance (J W R_q S)(J W R_q S)^T plus a 0.3 px dilation; conic = its inverse; radius
ceil(3 sqrt(largest eigenvalue)); colour = clamp_min(SH(dir) + 0.5, 0) with dir the normalised direction
from the camera centre to the mean. One pass per Gaussian replaces ~100 small torch ops (each an OpenMP
region) and their autograd backward. Gradients flow through drawn Gaussians only (radius > 0), as in
gsplat and the INRIA rasterizer; colours get gradients wherever the loss gives them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from gstrim.render.project import DILATION, NEAR_PLANE, SIGMA_EXTENT
from gstrim.render.sh import C0, C1, C2, C3

# SH constants in one array (cast to the scene's dtype by the caller): C0, C1, C2[0..4], C3[0..6]
SH_CONSTANTS = np.array([C0, C1, *C2, *C3])
CHUNK = 256  # Gaussians per parallel work item


def constants(dtype) -> np.ndarray:
    """[near, dilation, sigma extent, 0.3 (fov margin), SH constants...] in `dtype`."""
    return np.concatenate([[NEAR_PLANE, DILATION, SIGMA_EXTENT, 0.3], SH_CONSTANTS]).astype(dtype)


@njit(inline="always")
def _rotation(qw, qx, qy, qz):
    """Rotation matrix entries (row-major) of a normalised w x y z quaternion."""
    return (1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy),
            2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx),
            2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy))


@njit(inline="always")
def _sh_basis(degree, x, y, z, c, out):
    """The (degree + 1)^2 real SH basis values of a unit direction into out[:]."""
    out[0] = c[0]
    if degree > 0:
        out[1] = -c[1] * y
        out[2] = c[1] * z
        out[3] = -c[1] * x
    if degree > 1:
        xx, yy, zz = x * x, y * y, z * z
        out[4] = c[2] * x * y
        out[5] = c[3] * y * z
        out[6] = c[4] * (2 * zz - xx - yy)
        out[7] = c[5] * x * z
        out[8] = c[6] * (xx - yy)
        if degree > 2:
            out[9] = c[7] * y * (3 * xx - yy)
            out[10] = c[8] * x * y * z
            out[11] = c[9] * y * (4 * zz - xx - yy)
            out[12] = c[10] * z * (2 * zz - 3 * xx - 3 * yy)
            out[13] = c[11] * x * (4 * zz - xx - yy)
            out[14] = c[12] * z * (xx - yy)
            out[15] = c[13] * x * (xx - 3 * yy)


@njit(inline="always")
def _sh_basis_grad(degree, x, y, z, c, gx, gy, gz):
    """d basis_k / d(x, y, z) into gx, gy, gz (entries 1 .. (degree + 1)^2 - 1; entry 0 is constant)."""
    if degree > 0:
        gx[1], gy[1], gz[1] = 0, -c[1], 0
        gx[2], gy[2], gz[2] = 0, 0, c[1]
        gx[3], gy[3], gz[3] = -c[1], 0, 0
    if degree > 1:
        xx, yy, zz = x * x, y * y, z * z
        gx[4], gy[4], gz[4] = c[2] * y, c[2] * x, 0
        gx[5], gy[5], gz[5] = 0, c[3] * z, c[3] * y
        gx[6], gy[6], gz[6] = -2 * c[4] * x, -2 * c[4] * y, 4 * c[4] * z
        gx[7], gy[7], gz[7] = c[5] * z, 0, c[5] * x
        gx[8], gy[8], gz[8] = 2 * c[6] * x, -2 * c[6] * y, 0
        if degree > 2:
            gx[9], gy[9], gz[9] = 6 * c[7] * x * y, c[7] * (3 * xx - 3 * yy), 0
            gx[10], gy[10], gz[10] = c[8] * y * z, c[8] * x * z, c[8] * x * y
            gx[11], gy[11], gz[11] = -2 * c[9] * x * y, c[9] * (4 * zz - xx - 3 * yy), 8 * c[9] * y * z
            gx[12], gy[12], gz[12] = -6 * c[10] * x * z, -6 * c[10] * y * z, c[10] * (6 * zz - 3 * xx - 3 * yy)
            gx[13], gy[13], gz[13] = c[11] * (4 * zz - 3 * xx - yy), -2 * c[11] * x * y, 8 * c[11] * x * z
            gx[14], gy[14], gz[14] = 2 * c[12] * x * z, -2 * c[12] * y * z, c[12] * (xx - yy)
            gx[15], gy[15], gz[15] = c[13] * (3 * xx - 3 * yy), -6 * c[13] * x * y, 0


@njit(inline="always")
def _camera_point(g, means, R, t):
    m0, m1, m2 = means[g, 0], means[g, 1], means[g, 2]
    return (R[0, 0] * m0 + R[0, 1] * m1 + R[0, 2] * m2 + t[0],
            R[1, 0] * m0 + R[1, 1] * m1 + R[1, 2] * m2 + t[1],
            R[2, 0] * m0 + R[2, 1] * m1 + R[2, 2] * m2 + t[2])


@njit(inline="always")
def _footprint(g, quats, log_scales, R, M):
    """M = R R_q diag(s) into M[3, 3]; returns (normalised quaternion, quaternion norm, scales)."""
    qw, qx, qy, qz = quats[g, 0], quats[g, 1], quats[g, 2], quats[g, 3]
    norm = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    inv = 1 / max(norm, 1e-12)  # torch.nn.functional.normalize's eps
    qw, qx, qy, qz = qw * inv, qx * inv, qy * inv, qz * inv
    r = _rotation(qw, qx, qy, qz)
    s0, s1, s2 = math.exp(log_scales[g, 0]), math.exp(log_scales[g, 1]), math.exp(log_scales[g, 2])
    for k in range(3):
        M[k, 0] = (R[k, 0] * r[0] + R[k, 1] * r[3] + R[k, 2] * r[6]) * s0
        M[k, 1] = (R[k, 0] * r[1] + R[k, 1] * r[4] + R[k, 2] * r[7]) * s1
        M[k, 2] = (R[k, 0] * r[2] + R[k, 1] * r[5] + R[k, 2] * r[8]) * s2
    return qw, qx, qy, qz, norm, s0, s1, s2


@njit(inline="always")
def _fov_limits(fx, fy, cx, cy, width, height, margin):
    """Limits of x / z and y / z for the Jacobian: the field of view widened by `margin` (3DGS: 1.3x)."""
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    return ((width - cx) / fx + margin * tan_x, cx / fx + margin * tan_x,
            (height - cy) / fy + margin * tan_y, cy / fy + margin * tan_y)


@njit(inline="always")
def _clamped(v, lo, hi):
    """(min(max(v, lo), hi), whether it was clamped)."""
    if v < lo:
        return lo, True
    if v > hi:
        return hi, True
    return v, False


@njit(parallel=True, cache=True)
def project_and_shade(means, quats, log_scales, sh0, shN, R, t, fx, fy, cx, cy, width, height, campos, degree,
                      const, means2d, conics, depths, radii, colors):
    """Forward: means2d [N, 2], conics [N, 3], depths [N], radii [N] (int32, 0 = not drawn), colors [N, 3]."""
    n = means.shape[0]
    near, dilation, extent, margin = const[0], const[1], const[2], const[3]
    c = const[4:]
    lim_xp, lim_xn, lim_yp, lim_yn = _fov_limits(fx, fy, cx, cy, width, height, margin)
    n_basis = (degree + 1) * (degree + 1)
    # per-Gaussian scratch allocated once per chunk of Gaussians (an allocation per Gaussian cost more than
    # the arithmetic)
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        M = np.empty((3, 3), means.dtype)
        basis = np.empty(16, means.dtype)
        for g in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            x, y, z = _camera_point(g, means, R, t)
            depths[g] = z
            in_front = z > near
            zs = z if in_front else 1.0
            iz = 1 / zs
            tx = zs * _clamped(x / zs, -lim_xn, lim_xp)[0]
            ty = zs * _clamped(y / zs, -lim_yn, lim_yp)[0]
            _footprint(g, quats, log_scales, R, M)
            j00, j02 = fx * iz, -fx * tx * iz * iz
            j11, j12 = fy * iz, -fy * ty * iz * iz
            u0, u1, u2 = j00 * M[0, 0] + j02 * M[2, 0], j00 * M[0, 1] + j02 * M[2, 1], j00 * M[0, 2] + j02 * M[2, 2]
            v0, v1, v2 = j11 * M[1, 0] + j12 * M[2, 0], j11 * M[1, 1] + j12 * M[2, 1], j11 * M[1, 2] + j12 * M[2, 2]
            a = u0 * u0 + u1 * u1 + u2 * u2 + dilation
            b = u0 * v0 + u1 * v1 + u2 * v2
            cc = v0 * v0 + v1 * v1 + v2 * v2 + dilation
            det = a * cc - b * b
            ok = in_front and det > 0
            ds = det if ok else 1.0
            conics[g, 0], conics[g, 1], conics[g, 2] = cc / ds, -b / ds, a / ds
            mx, my = fx * x * iz + cx, fy * y * iz + cy
            means2d[g, 0], means2d[g, 1] = mx, my
            mid = 0.5 * (a + cc)
            lam = mid + math.sqrt(max(mid * mid - det, 0.1))
            r = math.ceil(extent * math.sqrt(lam))
            on_screen = mx + r > 0 and mx - r < width and my + r > 0 and my - r < height
            radii[g] = np.int32(r) if ok and on_screen else np.int32(0)

            d0, d1, d2 = means[g, 0] - campos[0], means[g, 1] - campos[1], means[g, 2] - campos[2]
            inv = 1 / max(math.sqrt(d0 * d0 + d1 * d1 + d2 * d2), 1e-12)
            _sh_basis(degree, d0 * inv, d1 * inv, d2 * inv, c, basis)
            for ch in range(3):
                value = basis[0] * sh0[g, 0, ch]
                for k in range(1, n_basis):
                    value += basis[k] * shN[g, k - 1, ch]
                colors[g, ch] = max(value + 0.5, 0.0)


@njit(parallel=True, cache=True)
def project_and_shade_backward(means, quats, log_scales, sh0, shN, R, t, fx, fy, cx, cy, width, height, campos,
                               degree, const, radii, colors, g_means2d, g_conics, g_colors,
                               d_means, d_quats, d_log_scales, d_sh0, d_shN):
    """Backward of `project_and_shade`: parameter gradients from those of means2d, conics and colors."""
    n = means.shape[0]
    dilation, margin = const[1], const[3]
    c = const[4:]
    lim_xp, lim_xn, lim_yp, lim_yn = _fov_limits(fx, fy, cx, cy, width, height, margin)
    n_basis = (degree + 1) * (degree + 1)
    for chunk in prange((n + CHUNK - 1) // CHUNK):  # scratch per chunk, as in the forward
        basis = np.empty(16, means.dtype)
        gx = np.empty(16, means.dtype)  # entry 0 is never read
        gy = np.empty(16, means.dtype)
        gz = np.empty(16, means.dtype)
        M = np.empty((3, 3), means.dtype)
        dM = np.empty((3, 3), means.dtype)
        G = np.empty((3, 3), means.dtype)
        for g in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            dm0 = dm1 = dm2 = 0.0

            # ---- colour: clamp_min(SH(dir) + 0.5, 0), dir = normalise(mean - campos)
            e0, e1, e2 = means[g, 0] - campos[0], means[g, 1] - campos[1], means[g, 2] - campos[2]
            length = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
            inv = 1 / max(length, 1e-12)
            ux, uy, uz = e0 * inv, e1 * inv, e2 * inv
            _sh_basis(degree, ux, uy, uz, c, basis)
            _sh_basis_grad(degree, ux, uy, uz, c, gx, gy, gz)
            dux = duy = duz = 0.0
            for ch in range(3):
                gc = g_colors[g, ch] if colors[g, ch] > 0 else 0.0
                d_sh0[g, 0, ch] = basis[0] * gc
                for k in range(1, n_basis):
                    d_shN[g, k - 1, ch] = basis[k] * gc
                    coeff = shN[g, k - 1, ch] * gc
                    dux += gx[k] * coeff
                    duy += gy[k] * coeff
                    duz += gz[k] * coeff
            if length > 1e-12:  # through the normalisation: (I - u u^T) / |e|
                dot = dux * ux + duy * uy + duz * uz
                dm0 += (dux - dot * ux) * inv
                dm1 += (duy - dot * uy) * inv
                dm2 += (duz - dot * uz) * inv

            if radii[g] > 0:  # ---- geometry, for drawn Gaussians
                x, y, z = _camera_point(g, means, R, t)
                iz = 1 / z
                rx, clamp_x = _clamped(x / z, -lim_xn, lim_xp)
                ry, clamp_y = _clamped(y / z, -lim_yn, lim_yp)
                tx, ty = z * rx, z * ry
                qw, qx, qy, qz, qnorm, s0, s1, s2 = _footprint(g, quats, log_scales, R, M)
                j00, j02 = fx * iz, -fx * tx * iz * iz
                j11, j12 = fy * iz, -fy * ty * iz * iz
                u0, u1, u2 = (j00 * M[0, 0] + j02 * M[2, 0], j00 * M[0, 1] + j02 * M[2, 1],
                              j00 * M[0, 2] + j02 * M[2, 2])
                v0, v1, v2 = (j11 * M[1, 0] + j12 * M[2, 0], j11 * M[1, 1] + j12 * M[2, 1],
                              j11 * M[1, 2] + j12 * M[2, 2])
                a = u0 * u0 + u1 * u1 + u2 * u2 + dilation
                b = u0 * v0 + u1 * v1 + u2 * v2
                cc = v0 * v0 + v1 * v1 + v2 * v2 + dilation
                det = a * cc - b * b
                # conic = (cc, -b, a) / det
                g0, g1, g2 = g_conics[g, 0], g_conics[g, 1], g_conics[g, 2]
                i2 = 1 / (det * det)
                dcon_ddet = -(g0 * cc - g1 * b + g2 * a) * i2
                da = g2 / det + dcon_ddet * cc
                db = -g1 / det + dcon_ddet * (-2 * b)
                dc = g0 / det + dcon_ddet * a
                # a = u.u, b = u.v, c = v.v
                du0, du1, du2 = 2 * da * u0 + db * v0, 2 * da * u1 + db * v1, 2 * da * u2 + db * v2
                dv0, dv1, dv2 = 2 * dc * v0 + db * u0, 2 * dc * v1 + db * u1, 2 * dc * v2 + db * u2
                # u = (j00, 0, j02) M, v = (0, j11, j12) M
                dj00 = M[0, 0] * du0 + M[0, 1] * du1 + M[0, 2] * du2
                dj02 = M[2, 0] * du0 + M[2, 1] * du1 + M[2, 2] * du2
                dj11 = M[1, 0] * dv0 + M[1, 1] * dv1 + M[1, 2] * dv2
                dj12 = M[2, 0] * dv0 + M[2, 1] * dv1 + M[2, 2] * dv2
                dM[0, 0], dM[0, 1], dM[0, 2] = j00 * du0, j00 * du1, j00 * du2
                dM[1, 0], dM[1, 1], dM[1, 2] = j11 * dv0, j11 * dv1, j11 * dv2
                dM[2, 0], dM[2, 1], dM[2, 2] = j02 * du0 + j12 * dv0, j02 * du1 + j12 * dv1, j02 * du2 + j12 * dv2
                # J entries: j00 = fx iz, j02 = -fx tx iz^2, j11 = fy iz, j12 = -fy ty iz^2
                diz = fx * dj00 + fy * dj11 - 2 * fx * tx * iz * dj02 - 2 * fy * ty * iz * dj12
                dtx, dty = -fx * iz * iz * dj02, -fy * iz * iz * dj12
                # means2d = (fx x iz + cx, fy y iz + cy)
                gmx, gmy = g_means2d[g, 0], g_means2d[g, 1]
                dx = fx * iz * gmx
                dy = fy * iz * gmy
                diz += fx * x * gmx + fy * y * gmy
                dz = -iz * iz * diz
                # tx = z clamp(x / z): x when inside the limits, z times the limit otherwise
                if clamp_x:
                    dz += rx * dtx
                else:
                    dx += dtx
                if clamp_y:
                    dz += ry * dty
                else:
                    dy += dty
                # p = R m + t
                dm0 += R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz
                dm1 += R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz
                dm2 += R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz
                # M = R R_q diag(s): dR_q = R^T dM diag(s), ds_l = sum_k (R R_q)_kl dM_kl = sum_k M_kl dM_kl / s_l
                s = (s0, s1, s2)
                for j in range(3):
                    for col in range(3):
                        G[j, col] = (R[0, j] * dM[0, col] + R[1, j] * dM[1, col] + R[2, j] * dM[2, col]) * s[col]
                for col in range(3):
                    # d log s = s d s, with ds_l = sum_k M_kl dM_kl / s_l
                    d_log_scales[g, col] = M[0, col] * dM[0, col] + M[1, col] * dM[1, col] + M[2, col] * dM[2, col]
                dqw = 2 * (-qz * G[0, 1] + qy * G[0, 2] + qz * G[1, 0] - qx * G[1, 2] - qy * G[2, 0] + qx * G[2, 1])
                dqx = 2 * (qy * G[0, 1] + qz * G[0, 2] + qy * G[1, 0] - 2 * qx * G[1, 1] - qw * G[1, 2]
                           + qz * G[2, 0] + qw * G[2, 1] - 2 * qx * G[2, 2])
                dqy = 2 * (-2 * qy * G[0, 0] + qx * G[0, 1] + qw * G[0, 2] + qx * G[1, 0] + qz * G[1, 2]
                           - qw * G[2, 0] + qz * G[2, 1] - 2 * qy * G[2, 2])
                dqz = 2 * (-2 * qz * G[0, 0] - qw * G[0, 1] + qx * G[0, 2] + qw * G[1, 0] - 2 * qz * G[1, 1]
                           + qy * G[1, 2] + qx * G[2, 0] + qy * G[2, 1])
                # through the normalisation q / |q|
                dot = dqw * qw + dqx * qx + dqy * qy + dqz * qz
                inv_q = 1 / max(qnorm, 1e-12)
                d_quats[g, 0] = (dqw - dot * qw) * inv_q
                d_quats[g, 1] = (dqx - dot * qx) * inv_q
                d_quats[g, 2] = (dqy - dot * qy) * inv_q
                d_quats[g, 3] = (dqz - dot * qz) * inv_q
            else:
                for k in range(4):
                    d_quats[g, k] = 0
                for k in range(3):
                    d_log_scales[g, k] = 0
            d_means[g, 0], d_means[g, 1], d_means[g, 2] = dm0, dm1, dm2
