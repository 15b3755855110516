"""Landmark-driven 3D head tracker: robust bundle adjustment over all frames of a clip (torch, CPU).

Model of landmark ``l`` in frame ``f`` (OpenCV camera, pixels)::

    X_fl = R_f (S_l + sum_k e_fk B_kl) + t_f          (head space -> camera, decimetres)
    u_fl = focal * X_fl.x / X_fl.z + cx,  v_fl = focal * X_fl.y / X_fl.z + cy

with one focal length, per-frame rotation ``R_f`` and translation ``t_f``, an identity shape ``S`` [L, 3] and
a rank-K expression basis ``B`` [K, L, 3] with per-frame coefficients ``e`` [N, K]. The cost is a Huber
loss of the reprojection residuals (in 512-pixel units, so constants do not depend on the frame size),
second-difference smoothness of the poses, and small priors on the shape and the expressions.

Initialisation: the identity shape is the Procrustes mean of mediapipe's per-frame 3D landmarks
(x, y in pixels, relative z in the scale of x), scaled so that the eye-contour centroids are
``INTEROCULAR_DM`` = 0.63 dm apart (the adult mean interpupillary distance, 63 mm); the focal length comes
from a PnP sweep; poses from PnP. A rigid stage then fits poses, shape and focal on landmarks that barely
move with expressions (eyelids, brows, irises, lips and everything below the nose tip excluded); a full
stage adds the expression basis on all landmarks.

Parametrisation: ``R_f = exp(w_f) R_0`` (``R_0`` the mean rotation, so ``w`` is small and smooth),
``t_f = z_f (a_f, 1)`` with ``z_f = focal / exp(s_f)``, i.e. the image-plane position ``a_f`` and the log
image scale ``s_f``; changing the focal then moves all depths together, the one weakly observed direction.

Head space after tracking (see docs/DATA_FORMAT.md): +x towards the subject's left (the line between the
eye centroids), +y up (chin -> top of the face, orthogonalised), +z out of the face; origin at the midpoint
of the eye centroids moved ``HEAD_CENTRE_DEPTH_DM`` = 0.85 dm back along -z, about the centre of the skull.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thg_nerf.log import get_logger, progress
from thg_nerf.preprocess.topology import Topology

log = get_logger(__name__)

INTEROCULAR_DM = 0.63
HEAD_CENTRE_DEPTH_DM = 0.85
#: Residuals are measured in pixels of a 512-pixel frame.
REF_SIZE = 512.0


@dataclass
class TrackerSettings:
    """Tracker constants (internal; defaults tuned on the synthetic oracle and real clips)."""

    n_expr: int = 12
    """Rank K of the expression basis."""
    huber_px: float = 1.5
    """Huber threshold in 512-pixel units."""
    smooth: float = 2.0
    """Weight of the pose second differences (in pixels of motion at 25 fps, scaled by fps^4)."""
    shape_prior: float = 1e-2
    """Weight pulling the shape towards its mediapipe initialisation (per landmark, 512-px^2 per dm^2 / 1e4)."""
    expr_prior: float = 1e-3
    rigid_expr_prior: float = 1.0
    """Extra penalty on expression offsets of rigid landmarks (keeps head motion in the pose)."""
    rigid_iters: int = 150
    full_iters: int = 200
    max_keyframes: int = 500
    focal_keyframes: int = 80
    """Frames used for the focal-length profile."""
    focal_iters: int = 60
    """Shape, focal and basis are estimated on at most this many frames; the rest follow with them fixed."""


@dataclass
class TrackResult:
    """Tracked head poses (OpenCV camera, head space of the module docstring) and model."""

    rotation: np.ndarray
    """[N, 3, 3] head-to-camera rotations."""
    translation: np.ndarray
    """[N, 3] head-to-camera translations (dm)."""
    focal: float
    shape: np.ndarray
    """[L, 3] identity shape in head space (dm)."""
    basis: np.ndarray
    """[K, L, 3] expression basis (dm)."""
    expression: np.ndarray
    """[N, K] expression coefficients."""
    residuals: np.ndarray
    """[N, L] reprojection error in pixels (NaN on frames with zero weight)."""
    rigid: np.ndarray
    """[L] bool: landmarks used by the rigid stage."""

    def project(self, cx: float, cy: float) -> np.ndarray:
        """[N, L, 2] model landmarks projected to pixels."""
        x = self.shape[None] + np.einsum("nk,kld->nld", self.expression, self.basis)
        cam = np.einsum("nij,nlj->nli", self.rotation, x) + self.translation[:, None]
        return self.focal * cam[..., :2] / cam[..., 2:3] + np.array([cx, cy])


def rigid_landmarks(shape: np.ndarray, topo: Topology) -> np.ndarray:
    """[L] bool: landmarks above the nose tip that are not eyelids, brows, irises or lips (head space, +y up)."""
    keep = shape[:, 1] >= shape[topo.nose_tip, 1] - 1e-6
    keep[list(topo.nonrigid())] = False
    return keep


def _umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Similarity (R, s, t) minimising |s R src + t - dst|^2; src, dst [M, 3]."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sv, vt = np.linalg.svd(b.T @ a)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
    r = u @ np.diag(d) @ vt
    s = float((sv * d).sum() / max((a**2).sum(), 1e-12))
    return r, s, md - s * r @ ms


def init_shape(landmarks: np.ndarray, z_rel: np.ndarray, w: int, topo: Topology,
               frames: np.ndarray) -> np.ndarray:
    """Procrustes mean of the per-frame mediapipe 3D landmarks [L, 3] in canonical head space (dm).

    landmarks [N, L, 2] pixels, z_rel [N, L] (relative depth / w), frames: indices of detected frames.
    """
    pts = np.concatenate([landmarks[frames], z_rel[frames, :, None] * w], axis=2).astype(np.float64)
    pts -= pts.mean(axis=1, keepdims=True)
    ref = pts[0]
    for _ in range(3):
        aligned = []
        for p in pts:
            r, s, t = _umeyama(p, ref)
            aligned.append(s * p @ r.T + t)
        ref = np.mean(aligned, axis=0)
    shape = ref * np.array([1.0, -1.0, -1.0])  # camera (x right, y down, z away) -> head (y up, z out)
    return canonicalise(shape, topo)[0]


def canonicalise(shape: np.ndarray, topo: Topology) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Rotate, move and scale a shape into canonical head space.

    Returns (canonical shape [L, 3], Q [3, 3], o [3], s) with ``canonical = s * (shape - o) @ Q.T``, where
    the scale ``s`` makes the interocular distance INTEROCULAR_DM.
    """
    le, re = shape[list(topo.left_eye)].mean(0), shape[list(topo.right_eye)].mean(0)
    x = le - re
    iod = float(np.linalg.norm(x))
    x /= iod
    up = shape[list(topo.top)].mean(0) - shape[topo.chin]
    y = up - (up @ x) * x
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    q = np.stack([x, y, z])
    o = 0.5 * (le + re) - HEAD_CENTRE_DEPTH_DM * iod / INTEROCULAR_DM * z
    s = INTEROCULAR_DM / iod
    return s * (shape - o) @ q.T, q, o, s


def _so3_exp(w):
    """Rodrigues: axis-angle [..., 3] -> rotation [..., 3, 3] (torch, safe at zero)."""
    import torch

    theta2 = (w * w).sum(-1, keepdim=True)[..., None]
    theta = torch.sqrt(theta2 + 1e-24)
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta2 + 1e-24))
    zero = torch.zeros_like(w[..., 0])
    k = torch.stack([zero, -w[..., 2], w[..., 1], w[..., 2], zero, -w[..., 0], -w[..., 1], w[..., 0], zero],
                    -1).reshape(w.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=w.dtype).expand_as(k)
    return eye + a * k + b * (k @ k)


def _mean_rotation(rs: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(rs.sum(0))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ d @ vt


def _pnp(shape: np.ndarray, pts2d: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Head-to-camera (R, t) of one frame and its mean reprojection error (pixels)."""
    import cv2

    obj = np.ascontiguousarray(shape, dtype=np.float64)
    img = np.ascontiguousarray(pts2d, dtype=np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_SQPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    r = cv2.Rodrigues(rvec)[0]
    proj = (obj @ r.T + tvec.ravel())
    err = np.linalg.norm(k[0, 0] * proj[:, :2] / proj[:, 2:3] + k[:2, 2] - img, axis=1).mean()
    return r, tvec.ravel(), float(err if ok and np.all(proj[:, 2] > 0) else np.inf)


def _intrinsics(focal: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[focal, 0, cx], [0, focal, cy], [0, 0, 1.0]])


def init_focal(shape: np.ndarray, landmarks: np.ndarray, frames: np.ndarray, w: int, h: int, cx: float,
               cy: float) -> float:
    """Focal length (pixels) with the lowest median PnP error over a sweep of fields of view."""
    sub = frames[np.linspace(0, len(frames) - 1, min(len(frames), 24)).astype(int)]
    best, best_err = float(max(w, h)), np.inf
    for mult in (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0):
        f = mult * max(w, h)
        err = float(np.median([_pnp(shape, landmarks[i], _intrinsics(f, cx, cy))[2] for i in sub]))
        if err < best_err:
            best, best_err = f, err
    return best


class _Problem:
    """The bundle-adjustment cost over a set of frames (torch float64 tensors)."""

    def __init__(self, lm, weights, lm_weights, cx, cy, scale, fps, settings: TrackerSettings, shape0,
                 rigid_mask, r0):
        import torch

        self.torch = torch
        t = torch.as_tensor
        self.lm = t(lm, dtype=torch.float64)
        self.fw = t(weights, dtype=torch.float64)
        self.lw = t(lm_weights, dtype=torch.float64)
        self.c = t([cx, cy], dtype=torch.float64)
        self.scale = scale  # pixels -> 512-pixel units
        self.st = settings
        self.shape0 = t(shape0, dtype=torch.float64)
        self.rigid = t(rigid_mask, dtype=torch.float64)
        self.r0 = t(r0, dtype=torch.float64)
        self.smooth = settings.smooth * (fps / 25.0) ** 4
        self.norm = float(max((weights > 0).sum(), 1))

    def project(self, w, a, s, phi, shape, basis, expr):
        torch = self.torch
        rot = _so3_exp(w) @ self.r0
        focal = torch.exp(phi)
        z = focal / torch.exp(s)
        x = shape.unsqueeze(0)
        if basis is not None:
            x = x + torch.einsum("nk,kld->nld", expr, basis)
        cam = torch.einsum("nij,nlj->nli", rot, x)
        cam = cam + torch.cat([a * z[:, None], z[:, None]], dim=1).unsqueeze(1)
        return focal * cam[..., :2] / cam[..., 2:3] + self.c, rot

    def cost(self, w, a, s, phi, shape, basis=None, expr=None, rigid_only=False):
        torch = self.torch
        uv, _ = self.project(w, a, s, phi, shape, basis, expr)
        r = torch.sqrt(((uv - self.lm) ** 2).sum(-1) + 1e-12) * self.scale
        d = self.st.huber_px
        rho = torch.where(r < d, 0.5 * r * r, d * (r - 0.5 * d))
        lw = self.lw * self.rigid if rigid_only else self.lw
        data = (rho * lw[None]).sum(-1) @ self.fw
        radius = 120.0  # typical face radius in 512-px units: turns angles and log-scales into pixels
        focal512 = torch.exp(phi) * self.scale
        sm = 0.0
        if w.shape[0] > 2:
            d2 = lambda v: v[2:] - 2 * v[1:-1] + v[:-2]  # noqa: E731
            sm = (radius**2 * (d2(w) ** 2).sum() + (focal512**2) * (d2(a) ** 2).sum()
                  + radius**2 * (d2(s) ** 2).sum())
        prior = self.st.shape_prior * 1e4 * ((shape - self.shape0) ** 2).sum()
        if basis is not None:
            off = torch.einsum("nk,kld->nld", expr, basis)
            lam = self.st.expr_prior + self.st.rigid_expr_prior * self.rigid
            prior = prior + 1e4 * ((off**2).sum(-1) * lam[None]).sum() / max(w.shape[0], 1)
            prior = prior + 1e-3 * (expr**2).sum()
        return (data + self.smooth * sm + prior) / self.norm


def _lbfgs(params, closure_fn, iters: int, desc: str) -> None:
    import torch

    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = closure_fn()
        loss.backward()
        return loss

    prev = np.inf
    bar = progress(total=iters, desc=desc, unit="it")
    try:
        for _ in range(max(iters // 20, 1)):
            loss = float(opt.step(closure).detach())
            bar.update(20)
            if not np.isfinite(loss) or prev - loss < 1e-7 * max(abs(prev), 1.0):
                break
            prev = loss
    finally:
        bar.close()


def track_head(landmarks: np.ndarray, z_rel: np.ndarray, weights: np.ndarray, size: tuple[int, int],
               principal: tuple[float, float], topo: Topology, fps: float,
               settings: TrackerSettings | None = None, focal_init: float | None = None) -> TrackResult:
    """Fit the head model to a landmark sequence.

    landmarks [N, L, 2] pixels; z_rel [N, L] mediapipe relative depth; weights [N] per-frame confidence
    (1 detected, <1 interpolated, 0 excluded); size (w, h); principal point (cx, cy) in pixels.
    """
    import torch

    st = settings or TrackerSettings()
    n, n_lm = landmarks.shape[:2]
    w_img, h_img = size
    cx, cy = principal
    weights = np.asarray(weights, dtype=np.float64)
    detected = np.flatnonzero(weights >= 1.0)
    if len(detected) < 2:
        detected = np.flatnonzero(weights > 0)
    sub = detected[np.linspace(0, len(detected) - 1, min(len(detected), 200)).astype(int)]
    shape0 = init_shape(landmarks, z_rel, w_img, topo, sub)
    rigid = rigid_landmarks(shape0, topo)
    focal0 = focal_init or init_focal(shape0[rigid], landmarks[:, rigid], detected, w_img, h_img, cx, cy)
    log.debug("tracker: initial focal %.1f px", focal0)

    k0 = _intrinsics(focal0, cx, cy)
    rots, trans = np.zeros((n, 3, 3)), np.zeros((n, 3))
    have = weights > 0
    for i in np.flatnonzero(have):
        rots[i], trans[i], _ = _pnp(shape0[rigid], landmarks[i, rigid], k0)
    src = np.flatnonzero(have)
    nearest = src[np.clip(np.searchsorted(src, np.arange(n)), 0, len(src) - 1)]
    rots[~have], trans[~have] = rots[nearest[~have]], trans[nearest[~have]]
    r0 = _mean_rotation(rots[have])
    import cv2

    w_init = np.stack([cv2.Rodrigues(r @ r0.T)[0].ravel() for r in rots])
    z = np.maximum(trans[:, 2], 1e-3)
    a_init = trans[:, :2] / z[:, None]
    s_init = np.log(focal0 / z)

    scale = REF_SIZE / max(w_img, h_img)
    lm_w = np.ones(n_lm)
    # keyframes for shape/focal/basis; then all frames with those fixed
    keys = np.arange(n)
    if n > st.max_keyframes:
        keys = np.unique(np.linspace(0, n - 1, st.max_keyframes).astype(int))

    def problem(idx: np.ndarray, fps_eff: float) -> _Problem:
        return _Problem(landmarks[idx], weights[idx], lm_w, cx, cy, scale, fps_eff, st, shape0, rigid, r0)

    dt = torch.float64

    def tensors(idx: np.ndarray):
        return (torch.tensor(w_init[idx], dtype=dt, requires_grad=True),
                torch.tensor(a_init[idx], dtype=dt, requires_grad=True),
                torch.tensor(s_init[idx], dtype=dt, requires_grad=True))

    # 1) focal: profile of the rigid cost (poses + shape re-fitted at each focal) on a few keyframes
    fkeys = detected[np.unique(np.linspace(0, len(detected) - 1, min(len(detected), st.focal_keyframes))
                               .astype(int))]
    pf = problem(fkeys, fps * len(fkeys) / n)
    w_t, a_t, s_t = tensors(fkeys)
    shape_t = torch.tensor(shape0, dtype=dt, requires_grad=True)
    focal = _focal_profile(pf, w_t, a_t, s_t, shape_t, focal0, max(w_img, h_img))
    phi = torch.tensor(np.log(focal), dtype=dt)
    log.debug("tracker: focal %.1f px", focal)

    # 2) rigid then full fit on the keyframes
    pk = problem(keys, fps * len(keys) / n)
    w_t, a_t, s_t = tensors(keys)
    _lbfgs([w_t, a_t, s_t, shape_t], lambda: pk.cost(w_t, a_t, s_t, phi, shape_t, rigid_only=True),
           st.rigid_iters, "tracking: rigid")
    basis0, expr0 = _init_expression(pk, w_t, a_t, s_t, phi, shape_t, st.n_expr)
    basis_t = torch.tensor(basis0, dtype=dt, requires_grad=True)
    e_t = torch.tensor(expr0, dtype=dt, requires_grad=True)
    _lbfgs([w_t, a_t, s_t, shape_t, basis_t, e_t],
           lambda: pk.cost(w_t, a_t, s_t, phi, shape_t, basis_t, e_t), st.full_iters, "tracking: full")

    if len(keys) < n:
        w_all, a_all, s_all, e_all = (_interp_rows(keys, v.detach().numpy(), n) for v in (w_t, a_t, s_t, e_t))
        pa = problem(np.arange(n), fps)
        w_t, a_t, s_t, e_t = (torch.tensor(v, dtype=dt, requires_grad=True) for v in (w_all, a_all, s_all, e_all))
        shape_f, basis_f = shape_t.detach(), basis_t.detach()
        _lbfgs([w_t, a_t, s_t, e_t], lambda: pa.cost(w_t, a_t, s_t, phi, shape_f, basis_f, e_t),
               st.full_iters // 2, "tracking: all frames")
        pk = pa

    with torch.no_grad():
        uv, rot = pk.project(w_t, a_t, s_t, phi, shape_t, basis_t, e_t)
        res = torch.sqrt(((uv - pk.lm) ** 2).sum(-1)).numpy()
        zs = (focal / torch.exp(s_t)).numpy()
        trans = np.concatenate([a_t.numpy() * zs[:, None], zs[:, None]], axis=1)
        rot = rot.numpy()
        shape, basis, expr = shape_t.numpy(), basis_t.numpy(), e_t.numpy()
    res[weights <= 0] = np.nan
    # canonical head space X' = s Q (X - o): R' = R Q^T, t' = s (t + R o) (the world scales by s)
    canon, q, o, s = canonicalise(shape, topo)
    rot_c = rot @ q.T
    trans_c = s * (trans + np.einsum("nij,j->ni", rot, o))
    basis_c = s * basis @ q.T
    return TrackResult(rotation=rot_c, translation=trans_c, focal=focal, shape=canon, basis=basis_c,
                       expression=expr, residuals=res, rigid=rigid)


def _focal_profile(pb: _Problem, w, a, s, shape, focal0: float, size: int) -> float:
    """The focal length minimising the rigid cost after re-fitting poses and shape (warm-started sweeps).

    The cost is nearly flat along (focal, depth relief, distance) for a free shape, so a joint optimiser
    stalls wherever it starts; a profile over log-focal finds the minimum reliably (see the module doc).
    """
    import torch

    params = [w, a, s, shape]
    cache: dict[float, float] = {}
    states: dict[float, list] = {}

    def cost(logf: float) -> float:
        key = round(float(logf), 6)
        if key not in cache:
            if states:  # warm start from the nearest focal already solved
                near = min(states, key=lambda k: abs(k - key))
                with torch.no_grad():
                    for p, v in zip(params, states[near]):
                        p.copy_(v)
            phi = torch.tensor(key, dtype=torch.float64)
            _lbfgs(params, lambda: pb.cost(w, a, s, phi, shape, rigid_only=True), pb.st.focal_iters, "")
            with torch.no_grad():
                cache[key] = float(pb.cost(w, a, s, phi, shape, rigid_only=True))
            states[key] = [p.detach().clone() for p in params]
        return cache[key]

    grid = np.log(size) + np.log(np.geomspace(0.5, 8.0, 13))
    start = int(np.argmin(np.abs(grid - np.log(focal0))))
    order = list(range(start, len(grid))) + list(range(start - 1, -1, -1))
    vals = {i: cost(grid[i]) for i in progress(order, desc="tracking: focal", unit="f")}
    i = min(vals, key=vals.get)
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (np.sqrt(5) - 1) / 2
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    while hi - lo > 0.004:
        if cost(x1) < cost(x2):
            hi, x2 = x2, x1
            x1 = hi - g * (hi - lo)
        else:
            lo, x1 = x1, x2
            x2 = lo + g * (hi - lo)
    best = min(cache, key=cache.get)
    with torch.no_grad():
        for p, v in zip(params, states[best]):
            p.copy_(v)
    return float(np.exp(best))


def _interp_rows(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Linearly interpolate per-keyframe rows [len(keys), ...] to all n frames."""
    flat = values.reshape(len(keys), -1)
    out = np.stack([np.interp(np.arange(n), keys, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    return out.reshape((n,) + values.shape[1:])


def _init_expression(pb: _Problem, w, a, s, phi, shape, k: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the rigid fit's residuals lifted to head space: initial basis [K, L, 3] and coefficients [N, K]."""
    import torch

    with torch.no_grad():
        uv, rot = pb.project(w, a, s, phi, shape, None, None)
        z = (torch.exp(phi) / torch.exp(s)).numpy()
        res = (pb.lm - uv).numpy() * (z / float(torch.exp(phi)))[:, None, None]  # pixels -> dm at the head
        rot = rot.numpy()
    d = np.concatenate([res, np.zeros(res.shape[:2] + (1,))], axis=2)
    d = np.einsum("nji,nlj->nli", rot, d)  # camera -> head space
    fw = pb.fw.numpy() > 0
    mat = d[fw].reshape(int(fw.sum()), -1)
    _, sv, vt = np.linalg.svd(mat, full_matrices=False)
    k = min(k, vt.shape[0])
    basis = vt[:k] * (sv[:k, None] / np.sqrt(max(mat.shape[0], 1)))
    coeffs = np.zeros((d.shape[0], k))
    coeffs[fw] = mat @ basis.T / np.maximum((basis**2).sum(1), 1e-12)
    return basis.reshape(k, -1, 3), coeffs
