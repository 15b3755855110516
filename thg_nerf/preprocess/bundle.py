"""Second-order bundle-adjustment steps in numpy: the rigid Levenberg-Marquardt stage and per-frame
Gauss-Newton with the model fixed.

Rigid bundle adjustment by Levenberg-Marquardt with a Schur complement (:class:`RigidBA`).

Unknowns: per-frame head-to-camera rotation ``R_f`` and translation ``t_f``, per-landmark 3D point ``X_j``
(head space) and one log-focal ``phi``. Residuals: reprojection errors in 512-pixel units with IRLS Huber
weights, a log-normal prior on the focal and a weak prior pulling the points towards their initial shape.
The normal equations are reduced to the (3 L + 1) point-and-focal system by eliminating the 6x6 camera
blocks, so each iteration is exact second-order (Gauss-Newton) information at the cost of one dense
solve whatever the number of frames; this crosses the long, flat valleys (focal vs distance vs depth
relief) that first-order methods crawl along.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RigidSolution:
    rotation: np.ndarray
    """[N, 3, 3]"""
    translation: np.ndarray
    """[N, 3]"""
    points: np.ndarray
    """[L, 3]"""
    focal: float
    cost: float


def _skew(v: np.ndarray) -> np.ndarray:
    """[..., 3] -> [..., 3, 3] cross-product matrices."""
    z = np.zeros(v.shape[:-1])
    return np.stack([z, -v[..., 2], v[..., 1], v[..., 2], z, -v[..., 0], -v[..., 1], v[..., 0], z],
                    -1).reshape(v.shape[:-1] + (3, 3))


def _exp(w: np.ndarray) -> np.ndarray:
    """Rodrigues [N, 3] -> [N, 3, 3]."""
    th = np.linalg.norm(w, axis=-1)[..., None, None]
    k = _skew(w)
    a = np.where(th < 1e-8, 1.0, np.sin(th) / np.maximum(th, 1e-12))
    b = np.where(th < 1e-8, 0.5, (1 - np.cos(th)) / np.maximum(th, 1e-12) ** 2)
    return np.eye(3) + a * k + b * (k @ k)


class RigidBA:
    """Problem data: observations [N, L, 2] (pixels), frame weights [N], principal point, 512-px scale."""

    def __init__(self, obs: np.ndarray, frame_w: np.ndarray, principal: tuple[float, float], scale: float,
                 huber: float, focal_prior: float, focal_weight: float, points0: np.ndarray,
                 point_weight: float) -> None:
        self.obs = np.asarray(obs, np.float64)
        self.fw = np.asarray(frame_w, np.float64)
        self.c = np.asarray(principal, np.float64)
        self.scale = scale
        self.huber = huber
        self.phi0 = float(np.log(focal_prior))
        self.lam_f = focal_weight * max(float((self.fw > 0).sum()), 1.0)  # per-frame weight x frames
        self.x0 = np.asarray(points0, np.float64)
        self.mu = point_weight

    def residuals(self, rot, trans, pts, phi):
        """Residuals [N, L, 2] in 512-px units and the camera points [N, L, 3]."""
        cam = np.einsum("nij,lj->nli", rot, pts) + trans[:, None]
        z = np.maximum(cam[..., 2:3], 1e-6)
        uv = np.exp(phi) * cam[..., :2] / z + self.c
        return (uv - self.obs) * self.scale, cam

    def cost(self, rot, trans, pts, phi) -> float:
        r, _ = self.residuals(rot, trans, pts, phi)
        n = np.linalg.norm(r, axis=-1)
        d = self.huber
        rho = np.where(n < d, 0.5 * n * n, d * (n - 0.5 * d))
        return float((rho.sum(1) * self.fw).sum() + self.lam_f * (phi - self.phi0) ** 2
                     + 0.5 * self.mu * ((pts - self.x0) ** 2).sum())

    def solve(self, rot, trans, pts, focal, iters: int = 30, fix_focal: bool = False) -> RigidSolution:
        rot, trans, pts = rot.copy(), trans.copy(), pts.copy()
        phi = float(np.log(focal))
        n, n_l = self.obs.shape[:2]
        lam = 1e-3
        cost = self.cost(rot, trans, pts, phi)
        for _ in range(iters):
            r, cam = self.residuals(rot, trans, pts, phi)
            norm = np.linalg.norm(r, axis=-1)
            om = np.where(norm < self.huber, 1.0, self.huber / np.maximum(norm, 1e-12)) * self.fw[:, None]
            f = np.exp(phi)
            x, y, z = cam[..., 0], cam[..., 1], np.maximum(cam[..., 2], 1e-6)
            # d(uv)/d(cam) [N, L, 2, 3], in 512-px units
            p = np.zeros((n, n_l, 2, 3))
            p[..., 0, 0] = p[..., 1, 1] = f / z
            p[..., 0, 2] = -f * x / z**2
            p[..., 1, 2] = -f * y / z**2
            p *= self.scale
            rx = cam - trans[:, None]  # R X
            jc = np.concatenate([p @ -_skew(rx), p], axis=-1)  # [N, L, 2, 6]
            jp = p @ rot[:, None]  # [N, L, 2, 3]
            jf = (r / self.scale + self.obs - self.c) * self.scale  # d(uv)/d(phi) = uv - c
            wr = om[..., None] * r
            # blocks of the normal equations
            u_blk = np.einsum("nlai,nl,nlaj->nij", jc, om, jc) + 1e-9 * np.eye(6)  # frames without data stay
            v_blk = np.einsum("nlai,nl,nlaj->lij", jp, om, jp) + self.mu * np.eye(3)
            w_blk = np.einsum("nlai,nl,nlaj->nlij", jc, om, jp)  # [N, L, 6, 3]
            u_f = np.einsum("nlai,nl,nla->ni", jc, om, jf)
            v_f = np.einsum("nlai,nl,nla->li", jp, om, jf)
            h_ff = float(np.einsum("nla,nl,nla->", jf, om, jf)) + 2 * self.lam_f
            g_c = np.einsum("nlai,nla->ni", jc, wr)
            g_p = np.einsum("nlai,nla->li", jp, wr) + self.mu * (pts - self.x0)
            g_f = float(np.einsum("nla,nla->", jf, wr)) + 2 * self.lam_f * (phi - self.phi0)
            while True:
                ud = u_blk + lam * np.einsum("nii->ni", u_blk)[..., None] * np.eye(6)
                vd = v_blk + lam * np.einsum("lii->li", v_blk)[..., None] * np.eye(3)
                hf = h_ff * (1 + lam)
                # Schur complement on the cameras (6x6 blocks): system over z = (points [3L], phi)
                m = 3 * n_l + 1
                cm = np.zeros((n, 6, m))
                cm[:, :, :3 * n_l] = w_blk.transpose(0, 2, 1, 3).reshape(n, 6, 3 * n_l)
                cm[:, :, -1] = u_f
                uinv = np.linalg.inv(ud)
                tm = uinv @ cm  # [N, 6, m]
                a = -(cm.reshape(6 * n, m).T @ tm.reshape(6 * n, m))
                idx = np.arange(n_l)
                for k in range(3):
                    for j in range(3):
                        a[3 * idx + k, 3 * idx + j] += vd[:, k, j]
                a[:3 * n_l, -1] += v_f.ravel()
                a[-1, :3 * n_l] += v_f.ravel()
                a[-1, -1] += hf
                g_z = np.concatenate([g_p.ravel(), [g_f]])
                rhs = -g_z + np.einsum("nai,na->i", tm, g_c)
                if fix_focal:
                    a[-1, :] = 0.0
                    a[:, -1] = 0.0
                    a[-1, -1] = 1.0
                    rhs[-1] = 0.0
                try:
                    dz = np.linalg.solve(a, rhs)
                except np.linalg.LinAlgError:
                    dz = np.linalg.lstsq(a, rhs, rcond=None)[0]
                dc = np.einsum("nij,nj->ni", uinv, -g_c - cm @ dz)
                dp = dz[:-1].reshape(n_l, 3)
                rot_n = _exp(dc[:, :3]) @ rot
                trans_n = trans + dc[:, 3:]
                pts_n = pts + dp
                phi_n = phi + dz[-1]
                new = self.cost(rot_n, trans_n, pts_n, phi_n)
                if new < cost:
                    improvement = (cost - new) / max(cost, 1e-12)
                    rot, trans, pts, phi, cost = rot_n, trans_n, pts_n, phi_n, new
                    lam = max(lam / 3, 1e-7)
                    break
                lam *= 4
                if lam > 1e6:
                    improvement = 0.0
                    break
            if improvement < 1e-9:
                break
        return RigidSolution(rot, trans, pts, float(np.exp(phi)), cost)

    def refine_points(self, rot, trans, pts, focal, iters: int = 5) -> np.ndarray:
        """Points [L, 3] re-fitted (Gauss-Newton, IRLS Huber) with the cameras and focal fixed."""
        pts = pts.copy()
        for _ in range(iters):
            r, cam = self.residuals(rot, trans, pts, np.log(focal))
            norm = np.linalg.norm(r, axis=-1)
            om = np.where(norm < self.huber, 1.0, self.huber / np.maximum(norm, 1e-12)) * self.fw[:, None]
            x, y, z = cam[..., 0], cam[..., 1], np.maximum(cam[..., 2], 1e-6)
            p = np.zeros(cam.shape[:2] + (2, 3))
            p[..., 0, 0] = p[..., 1, 1] = focal / z
            p[..., 0, 2] = -focal * x / z**2
            p[..., 1, 2] = -focal * y / z**2
            jp = self.scale * p @ rot[:, None]
            v = np.einsum("nlai,nl,nlaj->lij", jp, om, jp) + (self.mu + 1e-9) * np.eye(3)
            g = np.einsum("nlai,nl,nla->li", jp, om, r) + self.mu * (pts - self.x0)
            pts -= np.einsum("lij,lj->li", np.linalg.inv(v), g)
        return pts


def _projection_jacobian(cam: np.ndarray, focal: float, scale: float) -> np.ndarray:
    """d(uv)/d(camera point) [..., 2, 3] in 512-px units."""
    x, y, z = cam[..., 0], cam[..., 1], np.maximum(cam[..., 2], 1e-6)
    p = np.zeros(cam.shape[:-1] + (2, 3))
    p[..., 0, 0] = p[..., 1, 1] = focal / z
    p[..., 0, 2] = -focal * x / z**2
    p[..., 1, 2] = -focal * y / z**2
    return p * scale


def fit_frames(obs: np.ndarray, frame_w: np.ndarray, rot: np.ndarray, trans: np.ndarray, expr: np.ndarray,
               shape: np.ndarray, basis: np.ndarray, lam: np.ndarray, focal: float,
               principal: tuple[float, float], scale: float, huber: float, iters: int = 4,
               chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame Gauss-Newton (IRLS Huber) of pose and expression with the model fixed.

    obs [N, L, 2] pixels; rot [N, 3, 3], trans [N, 3], expr [N, K]; shape [L, 3], basis [K, L, 3];
    lam [L] weights of the expression offsets (cost ``1e4 * sum lam |offset|^2 + 1e-3 |e|^2``, as in the
    tracker). Frames are independent here (no smoothness), so each solves an 6+K system; processed in chunks
    to bound memory. Returns updated (rot, trans, expr).
    """
    rot, trans, expr = rot.copy(), trans.copy(), expr.copy()
    n, n_l = obs.shape[:2]
    k = basis.shape[0]
    c = np.asarray(principal, np.float64)
    reg = 2e4 * np.einsum("kli,l,mli->km", basis, lam, basis) + 2e-3 * np.eye(k)  # prior Hessian [K, K]
    for a in range(0, n, chunk):
        sl = slice(a, min(a + chunk, n))
        r_, t_, e_ = rot[sl], trans[sl], expr[sl]
        om_f = frame_w[sl]
        for _ in range(iters):
            x = shape[None] + np.einsum("nk,kli->nli", e_, basis)
            rx = np.einsum("nij,nlj->nli", r_, x)
            cam = rx + t_[:, None]
            uv = focal * cam[..., :2] / np.maximum(cam[..., 2:3], 1e-6) + c
            res = (uv - obs[sl]) * scale
            norm = np.linalg.norm(res, axis=-1)
            om = np.where(norm < huber, 1.0, huber / np.maximum(norm, 1e-12))
            p = _projection_jacobian(cam, focal, scale)
            rb = np.einsum("nij,kli->nlkj", r_, basis, optimize=True)  # d cam / d e  [n, L, K, 3]
            jac = np.concatenate([p @ -_skew(rx), p, p @ rb.swapaxes(-1, -2)], axis=-1)  # [n, L, 2, 6+K]
            sw = np.sqrt(om)[..., None, None]
            jw = (jac * sw).reshape(len(r_), -1, 6 + k)
            h = jw.swapaxes(1, 2) @ jw
            g = (jw.swapaxes(1, 2) @ (res[..., None] * sw).reshape(len(r_), -1, 1))[..., 0]
            h[:, 6:, 6:] += reg
            g[:, 6:] += e_ @ reg.T
            h += 1e-9 * np.eye(6 + k)
            d = -np.linalg.solve(h, g[..., None])[..., 0]
            d[om_f <= 0] = 0.0
            r_ = _exp(d[:, :3]) @ r_
            t_ = t_ + d[:, 3:6]
            e_ = e_ + d[:, 6:]
        rot[sl], trans[sl], expr[sl] = r_, t_, e_
    return rot, trans, expr
