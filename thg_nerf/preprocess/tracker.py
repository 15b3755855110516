"""Landmark-driven 3D head tracker: robust bundle adjustment over all frames of a clip (torch, CPU).

Model of landmark ``l`` in frame ``f`` (OpenCV camera, pixels)::

    X_fl = R_f (S_l + sum_k e_fk B_kl) + t_f          (head space -> camera, decimetres)
    u_fl = focal * X_fl.x / X_fl.z + cx,  v_fl = focal * X_fl.y / X_fl.z + cy

with one focal length, per-frame rotation ``R_f`` and translation ``t_f``, an identity shape ``S`` [L, 3] and
a rank-K expression basis ``B`` [K, L, 3] with per-frame coefficients ``e`` [N, K]. The cost is a Huber
loss of the reprojection residuals (in 512-pixel units, so constants do not depend on the frame size),
second-difference smoothness of the poses, and small priors on the shape and the expressions.

Stages:

1. Initial shape: the Procrustes mean of mediapipe's per-frame 3D landmarks (x, y in pixels, relative z in
   the scale of x), scaled so that the eye-contour centroids are ``INTEROCULAR_DM`` = 0.63 dm apart (the
   adult mean interpupillary distance, 63 mm); poses from PnP.
2. Rigid Levenberg-Marquardt (:mod:`thg_nerf.preprocess.bundle`) on up to ``max_keyframes`` frames: focal,
   poses and shape of the landmarks that barely move with expressions (eyelids, brows, irises, lips and
   everything below the nose tip excluded, then those that still move on their own after a first fit).
   The focal is only weakly observable (through perspective changes as the head turns), so it has a
   log-normal prior: a 30 degree horizontal field of view of the source camera (typical talking-head
   footage), weight ``focal_prior`` per frame; clips with real head rotation override it (the synthetic
   oracle recovers its focal within 1 %), near-frontal clips stay close to it.
3. Full fit on those frames with L-BFGS: all landmarks, the expression basis and the pose smoothness,
   focal fixed.
4. Longer clips: every other frame by per-frame Gauss-Newton (pose + expression, model fixed), then an
   L-BFGS pass over all frames for the smoothness.

Parametrisation of the L-BFGS stages: ``R_f = exp(w_f) R_0`` (``R_0`` the mean rotation, so ``w`` is
small and smooth); ``t_f = z_f (a_f, 1)`` with ``z_f = focal / exp(s_f)`` (image-plane position ``a_f``,
stored x10 to even out curvatures, and log image scale ``s_f``); a relief variable ``kappa`` scales the
shape's depth by exp(kappa) and the out-of-plane rotation components by exp(-kappa), making the bas-relief
valley (deeper face, smaller rotations) one coordinate.

Head space after tracking (see docs/DATA_FORMAT.md): +x towards the subject's left (the line between the
eye centroids), +y up (chin -> top of the face, orthogonalised), +z out of the face; origin at the midpoint
of the eye centroids moved ``HEAD_CENTRE_DEPTH_DM`` = 0.85 dm back along -z, about the centre of the skull.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thg_nerf.log import get_logger, progress
from thg_nerf.preprocess.bundle import RigidBA, fit_frames
from thg_nerf.preprocess.topology import Topology

log = get_logger(__name__)

INTEROCULAR_DM = 0.63
HEAD_CENTRE_DEPTH_DM = 0.85
#: Residuals are measured in pixels of a 512-pixel frame.
REF_SIZE = 512.0


@dataclass
class TrackerSettings:
    """Tracker constants (internal; defaults tuned on the synthetic oracle and the sample clips)."""

    n_expr: int = 12
    """Rank K of the expression basis."""
    huber_px: float = 1.5
    """Huber threshold in 512-pixel units."""
    smooth: float = 10.0
    """Weight of the pose second differences (in pixels of motion at 25 fps, scaled by fps^4)."""
    shape_prior: float = 1e-3
    """Weight pulling the shape towards its mediapipe initialisation (x 1e4 per dm^2, per landmark)."""
    focal_prior: float = 0.3
    """Weight of (log focal - log prior focal)^2 per frame."""
    prior_fov_deg: float = 30.0
    """Horizontal field of view behind the default prior focal."""
    expr_prior: float = 1e-3
    rigid_expr_prior: float = 30.0
    """Extra penalty on expression offsets of rigid landmarks (keeps head motion in the pose)."""
    rigid_keep: float = 1.3
    """Rigid-set landmarks whose residual RMS after a first rigid fit exceeds this x the median (and the
    median + 0.5 px) are dropped."""
    full_iters: int = 120
    all_iters: int = 60
    max_keyframes: int = 300
    """Focal, shape and basis are estimated on at most this many frames; the rest follow with them fixed."""
    lm_iters: int = 30


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


_A_SCALE = 10.0


class _Params:
    """Optimisation variables (torch tensors, float64 unless ``dtype``); ``basis``/``expr`` are None in the
    rigid stages.

    ``kappa`` scales the shape's depth by exp(kappa) and the out-of-plane rotation components by
    exp(-kappa): the bas-relief direction (deeper face, smaller rotations) becomes one variable.
    """

    def __init__(self, w, a, s, shape, kappa=None, basis=None, expr=None, dtype=None) -> None:
        import torch

        def var(x):
            return torch.tensor(np.asarray(x, dtype=np.float64), dtype=dtype or torch.float64, requires_grad=True)

        self.w, self.a, self.s, self.shape = var(w), var(np.asarray(a) * _A_SCALE), var(s), var(shape)
        self.kappa = var(0.0 if kappa is None else kappa)
        self.basis = None if basis is None else var(basis)
        self.expr = None if expr is None else var(expr)

    def tensors(self, model: bool = True, shape: bool = True) -> list:
        """The variables to optimise: per-frame ones, plus the model's (relief, shape, basis)."""
        out = [self.w, self.a, self.s, self.expr]
        if model:
            out += [self.kappa, self.shape if shape else None, self.basis]
        return [t for t in out if t is not None]

    def position(self):
        """[n, 2] image-plane position t.xy / t.z (stored x _A_SCALE, which evens out the curvatures)."""
        return self.a / _A_SCALE

    def rotation_vectors(self):
        import torch

        e = torch.exp(-self.kappa)
        return torch.stack([self.w[:, 0] * e, self.w[:, 1] * e, self.w[:, 2]], dim=1)

    def model_shape(self):
        import torch

        return torch.stack([self.shape[:, 0], self.shape[:, 1], self.shape[:, 2] * torch.exp(self.kappa)], 1)

    def snapshot(self) -> list:
        return [t.detach().clone() for t in self.tensors()]

    def restore(self, values: list) -> None:
        import torch

        with torch.no_grad():
            for t, v in zip(self.tensors(), values):
                t.copy_(v)

    def numpy(self, name: str) -> np.ndarray:
        if name == "a":
            return self.position().detach().numpy().copy()
        return getattr(self, name).detach().numpy().copy()


class _Problem:
    """The bundle-adjustment cost over a set of frames and landmarks (torch, float64 unless ``dtype``)."""

    def __init__(self, lm: np.ndarray, weights: np.ndarray, cols: np.ndarray, principal, scale: float,
                 fps: float, st: TrackerSettings, shape0: np.ndarray, rigid: np.ndarray, r0: np.ndarray,
                 dtype=None):
        import torch

        f64 = dtype or torch.float64
        self.cols = torch.as_tensor(cols)
        self.lm = torch.as_tensor(lm[:, cols], dtype=f64)
        self.fw = torch.as_tensor(weights, dtype=f64)
        self.c = torch.as_tensor(principal, dtype=f64)
        self.scale = scale  # pixels -> 512-pixel units
        self.st = st
        self.shape0 = torch.as_tensor(shape0, dtype=f64)
        self.lam = torch.as_tensor(st.expr_prior + st.rigid_expr_prior * rigid[cols], dtype=f64)
        self.r0 = torch.as_tensor(r0, dtype=f64)
        self.smooth = st.smooth * (fps / 25.0) ** 4
        self.norm = float(max((weights > 0).sum(), 1))

    def project(self, p: _Params, phi, offsets=None):
        """Landmarks [n, len(cols), 2] in pixels and rotations [n, 3, 3]."""
        import torch

        rot = _so3_exp(p.rotation_vectors()) @ self.r0
        focal = torch.exp(phi)
        z = focal / torch.exp(p.s)
        x = p.model_shape()[self.cols].unsqueeze(0)
        if p.basis is not None:
            x = x + (self.offsets(p) if offsets is None else offsets)
        cam = torch.einsum("nij,nlj->nli", rot, x)
        cam = cam + torch.cat([p.position() * z[:, None], z[:, None]], dim=1).unsqueeze(1)
        return focal * cam[..., :2] / cam[..., 2:3] + self.c, rot

    def offsets(self, p: _Params):
        """Expression offsets [n, len(cols), 3] (dm)."""
        import torch

        return torch.einsum("nk,kld->nld", p.expr, p.basis[:, self.cols])

    def cost(self, p: _Params, phi):
        import torch

        off = self.offsets(p) if p.basis is not None else None
        uv, _ = self.project(p, phi, off)
        r = torch.sqrt(((uv - self.lm) ** 2).sum(-1) + 1e-12) * self.scale
        d = self.st.huber_px
        rho = torch.where(r < d, 0.5 * r * r, d * (r - 0.5 * d))
        total = rho.sum(-1) @ self.fw
        if p.w.shape[0] > 2:
            radius = 120.0  # a face radius in 512-pixel units: turns angles and log-scales into pixels

            def d2(v):
                return ((v[2:] - 2 * v[1:-1] + v[:-2]) ** 2).sum()

            focal512 = torch.exp(phi) * self.scale
            total = total + self.smooth * (radius**2 * (d2(p.rotation_vectors()) + d2(p.s))
                                           + focal512**2 * d2(p.position()))
        total = total + self.st.shape_prior * 1e4 * ((p.model_shape() - self.shape0) ** 2).sum()
        if off is not None:
            total = total + 1e4 * ((off * off).sum(-1) @ self.lam).sum() + 1e-3 * (p.expr**2).sum()
        return total / self.norm


def _lbfgs(params: list, closure_fn, iters: int, desc: str = "") -> float:
    """Minimise ``closure_fn()`` over ``params`` with L-BFGS (strong Wolfe); returns the final cost."""
    import torch

    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=20, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = closure_fn()
        loss.backward()
        return loss

    prev = loss = np.inf
    bar = progress(total=iters, desc=desc, unit="it") if desc else None
    try:
        for _ in range(max(iters // 20, 1)):
            loss = float(opt.step(closure).detach())
            if bar is not None:
                bar.update(20)
            if not np.isfinite(loss) or prev - loss < 1e-7 * max(abs(prev), 1.0):
                break
            prev = loss
    finally:
        if bar is not None:
            bar.close()
    return loss


def track_head(landmarks: np.ndarray, z_rel: np.ndarray, weights: np.ndarray, size: tuple[int, int],
               principal: tuple[float, float], topo: Topology, fps: float,
               settings: TrackerSettings | None = None, focal_prior: float | None = None) -> TrackResult:
    """Fit the head model to a landmark sequence.

    landmarks [N, L, 2] pixels; z_rel [N, L] mediapipe relative depth; weights [N] per-frame confidence
    (1 detected, <1 interpolated, 0 excluded); size (w, h); principal point (cx, cy) in pixels;
    focal_prior: centre of the focal prior in pixels (default: ``prior_fov_deg`` across max(w, h)).
    """
    import torch

    st = settings or TrackerSettings()
    if focal_prior is None:
        focal_prior = 0.5 * max(size) / np.tan(np.deg2rad(st.prior_fov_deg) / 2)
    # the tensors are small: one thread is faster, and far faster when other processes share the cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _track(np.asarray(landmarks, dtype=np.float64), np.asarray(z_rel, dtype=np.float64),
                      np.asarray(weights, dtype=np.float64), size, principal, topo, fps, st, float(focal_prior))
    finally:
        torch.set_num_threads(threads)


def _track(landmarks, z_rel, weights, size, principal, topo, fps, st: TrackerSettings,
           focal_prior: float) -> TrackResult:
    import torch

    n, n_lm = landmarks.shape[:2]
    w_img, h_img = size
    if not np.any(weights > 0):
        raise ValueError("track_head needs at least one frame with a positive weight")
    detected = np.flatnonzero(weights >= 1.0)
    if len(detected) < 2:
        detected = np.flatnonzero(weights > 0)
    shape0 = init_shape(landmarks, z_rel, w_img, topo, _spread(detected, 200))
    rigid = rigid_landmarks(shape0, topo)
    rigid_cols, all_cols = np.flatnonzero(rigid), np.arange(n_lm)

    scale = REF_SIZE / max(w_img, h_img)
    keys = _spread(np.arange(n), st.max_keyframes)  # all frames of short clips
    have = np.flatnonzero(weights > 0)

    # 1) focal, rigid set, shape and keyframe poses by Levenberg-Marquardt (from PnP at the prior focal);
    # a first fit drops the "rigid" landmarks that still move on their own (forehead with the brows,
    # cheeks with smiles)
    k0 = _intrinsics(focal_prior, *principal)
    rot_k, trans_k = np.zeros((len(keys), 3, 3)), np.zeros((len(keys), 3))
    key_have = np.flatnonzero(weights[keys] > 0)
    for j in key_have:
        rot_k[j], trans_k[j], _ = _pnp(shape0[rigid], landmarks[keys[j], rigid], k0)
    near = _nearest(key_have, len(keys))
    rot_k, trans_k = rot_k[near], trans_k[near]
    mu = 2 * st.shape_prior * 1e4

    def rigid_ba(cols: np.ndarray, points0: np.ndarray) -> RigidBA:
        return RigidBA(landmarks[keys][:, cols], weights[keys], principal, scale, st.huber_px, focal_prior,
                       st.focal_prior, points0, mu)

    ba = rigid_ba(rigid_cols, shape0[rigid_cols])
    sol = ba.solve(rot_k, trans_k, shape0[rigid_cols], focal_prior, st.lm_iters // 2)
    r_, _ = ba.residuals(sol.rotation, sol.translation, sol.points, np.log(sol.focal))
    wk = weights[keys]
    rms = np.sqrt(((r_**2).sum(-1) * wk[:, None]).sum(0) / wk.sum())
    med = float(np.median(rms))
    keep = rms <= max(st.rigid_keep * med, med + 0.5)
    rigid_cols = rigid_cols[keep]
    sol = rigid_ba(rigid_cols, shape0[rigid_cols]).solve(sol.rotation, sol.translation, sol.points[keep],
                                                         sol.focal, st.lm_iters)
    focal = sol.focal
    # every landmark's mean position, triangulated from those poses; then canonical head space
    r_al, s_al, t_al = _umeyama(shape0[rigid_cols], sol.points)
    start = s_al * shape0 @ r_al.T + t_al
    start[rigid_cols] = sol.points
    shape_ba = rigid_ba(all_cols, start).refine_points(sol.rotation, sol.translation, start, focal)
    shape1, q, o, sc = canonicalise(shape_ba, topo)
    rot_k = sol.rotation @ q.T
    trans_k = sc * (sol.translation + np.einsum("nij,j->ni", sol.rotation, o))
    rigid = np.isin(all_cols, rigid_cols)
    log.debug("tracker: focal %.1f px (prior %.1f), %d rigid landmarks", focal, focal_prior, len(rigid_cols))

    # per-frame PnP at that focal (the detail between keyframes); frames without data copy their neighbour
    k1 = _intrinsics(focal, *principal)
    rots, trans = np.zeros((n, 3, 3)), np.zeros((n, 3))
    for i in have:
        rots[i], trans[i], _ = _pnp(shape1[rigid], landmarks[i, rigid], k1)
    nearest = _nearest(have, n)
    rots, trans = rots[nearest], trans[nearest]
    r0 = _mean_rotation(rots[have])
    w_init = _matrix_to_rotvec(rots @ r0.T)
    z = np.maximum(trans[:, 2], 1e-3)
    a_init, s_init = trans[:, :2] / z[:, None], np.log(focal / z)
    phi = torch.tensor(float(np.log(focal)), dtype=torch.float64)

    def problem(idx: np.ndarray, cols: np.ndarray, dtype=None) -> _Problem:
        return _Problem(landmarks[idx], weights[idx], cols, principal, scale, fps * len(idx) / n, st, shape1,
                        rigid, r0, dtype)

    zk = np.maximum(trans_k[:, 2], 1e-3)
    pk = _Params(_matrix_to_rotvec(rot_k @ r0.T), trans_k[:, :2] / zk[:, None], np.log(focal / zk), shape1)

    # 2) full fit with the expression basis and pose smoothness (L-BFGS), then the frames between
    # keyframes with the model fixed
    prob = problem(keys, all_cols)
    basis0, expr0 = _init_expression(prob, pk, phi, weights[keys] > 0, st.n_expr)
    pk = _Params(pk.numpy("w"), pk.numpy("a"), pk.numpy("s"), pk.numpy("shape"), pk.numpy("kappa"), basis0,
                 expr0)
    _lbfgs(pk.tensors(), lambda: prob.cost(pk, phi), st.full_iters, "tracking: full")
    if len(keys) < n:
        # start from the keyframe solution interpolated plus the per-frame detail of the PnP poses, solve
        # each frame's pose and expression by Gauss-Newton, then smooth them all together
        detail = [v - _interp_rows(keys, v[keys], n) for v in (w_init, a_init, s_init)]
        kappa = float(pk.kappa.detach())
        w_eff = _interp_rows(keys, pk.rotation_vectors().detach().numpy(), n) + detail[0]
        a0 = _interp_rows(keys, pk.numpy("a"), n) + detail[1]
        z0 = focal / np.exp(_interp_rows(keys, pk.numpy("s"), n) + detail[2])
        shape_m, basis_m = pk.model_shape().detach().numpy(), pk.numpy("basis")
        lam = st.expr_prior + st.rigid_expr_prior * rigid
        rot, trans, expr = fit_frames(landmarks, weights, _rotvec_to_matrix(w_eff) @ r0,
                                      np.concatenate([a0 * z0[:, None], z0[:, None]], axis=1),
                                      _interp_rows(keys, pk.numpy("expr"), n), shape_m, basis_m, lam, focal,
                                      principal, scale, st.huber_px)
        w_eff = _matrix_to_rotvec(rot @ r0.T)
        # the smoothing pass in float32 on every other non-rigid landmark: the longest stage
        f32 = torch.float32
        cols = np.union1d(rigid_cols, np.setdiff1d(all_cols, rigid_cols)[::2])
        pa = _Params(w_eff * np.array([np.exp(kappa), np.exp(kappa), 1.0]), trans[:, :2] / trans[:, 2:3],
                     np.log(focal / trans[:, 2]), pk.numpy("shape"), kappa, basis_m, expr, dtype=f32)
        prob = problem(np.arange(n), cols, f32)
        phi32 = phi.to(f32)
        _lbfgs(pa.tensors(model=False), lambda: prob.cost(pa, phi32), st.all_iters, "tracking: all frames")
        pk = _Params(*(pa.numpy(k) for k in ("w", "a", "s", "shape", "kappa", "basis", "expr")))
        prob = problem(np.arange(n), all_cols)

    with torch.no_grad():
        uv, rot = prob.project(pk, phi)
        res = torch.sqrt(((uv - prob.lm) ** 2).sum(-1)).numpy()
        zs = focal / np.exp(pk.numpy("s"))
        trans = np.concatenate([pk.numpy("a") * zs[:, None], zs[:, None]], axis=1)
        rot = rot.numpy()
        shape = pk.model_shape().numpy()
    basis, expr = pk.numpy("basis"), pk.numpy("expr")
    res[weights <= 0] = np.nan
    # the neutral shape is the mean face of the clip: move the mean expression into it
    mean_e = expr[weights > 0].mean(axis=0)
    shape = shape + np.einsum("k,kld->ld", mean_e, basis)
    expr = expr - mean_e
    # canonical head space X' = s Q (X - o): R' = R Q^T, t' = s (t + R o) (the world scales by s)
    canon, q, o, s = canonicalise(shape, topo)
    return TrackResult(rotation=rot @ q.T, translation=s * (trans + np.einsum("nij,j->ni", rot, o)),
                       focal=focal, shape=canon, basis=s * basis @ q.T, expression=expr, residuals=res,
                       rigid=rigid)


def _rotvec_to_matrix(w: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(w).as_matrix()


def _matrix_to_rotvec(r: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(r).as_rotvec()


def _nearest(have: np.ndarray, n: int) -> np.ndarray:
    """For each of n frames, the nearest index in the sorted array ``have``."""
    t = np.arange(n)
    hi = np.clip(np.searchsorted(have, t), 0, len(have) - 1)
    lo = np.clip(hi - 1, 0, len(have) - 1)
    return np.where(np.abs(have[lo] - t) <= np.abs(have[hi] - t), have[lo], have[hi])


def _spread(idx: np.ndarray, k: int) -> np.ndarray:
    """At most k evenly spread entries of idx."""
    return idx[np.unique(np.linspace(0, len(idx) - 1, min(len(idx), k)).astype(int))]


def _interp_rows(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Linearly interpolate per-keyframe rows [len(keys), ...] to all n frames."""
    flat = values.reshape(len(keys), -1)
    out = np.stack([np.interp(np.arange(n), keys, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    return out.reshape((n,) + values.shape[1:])


def _init_expression(pb: _Problem, p: _Params, phi, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the rigid fit's residuals lifted to head space: initial basis [K, L, 3], coefficients [n, K]."""
    import torch

    with torch.no_grad():
        uv, rot = pb.project(p, phi)
        depth = float(torch.exp(phi)) / np.exp(p.numpy("s"))  # pixels -> dm at the head: z / focal
        res = (pb.lm - uv).numpy() * (depth / float(torch.exp(phi)))[:, None, None]
    d = np.concatenate([res, np.zeros(res.shape[:2] + (1,))], axis=2)
    d = np.einsum("nji,nlj->nli", rot.numpy(), d)  # camera -> model space
    mat = d[valid].reshape(int(valid.sum()), -1)
    _, sv, vt = np.linalg.svd(mat, full_matrices=False)
    k = min(k, vt.shape[0])
    basis = vt[:k] * (sv[:k, None] / np.sqrt(max(mat.shape[0], 1)))
    coeffs = np.zeros((d.shape[0], k))
    coeffs[valid] = mat @ basis.T / np.maximum((basis**2).sum(1), 1e-12)
    return basis.reshape(k, -1, 3), coeffs
