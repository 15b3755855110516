"""Motion targets: a compact per-frame code of the lower face's motion, computed from the tracking.

Each frame's 2D landmarks of the lips, jaw line and chin are lifted into canonical head space: a landmark is
back-projected through the camera at the depth the tracked head model gives it, then moved into head space
with the inverse head pose. What remains after subtracting the identity shape is the expression offset of
that landmark with head motion removed (decimetres; x, y only, as depth from one view is not observed).
A PCA over the training frames reduces the offsets to ``n_components`` coefficients: the motion code the
head field is conditioned on and the audio -> motion model predicts. The 2D mouth opening (inner-lip gap
over mouth width, the quantity the lip-sync checks measure) is stored beside it.

``motion.npz`` of a dataset directory (see docs/DATA_FORMAT.md)::

    motion      [N, M] float32   PCA coefficients per frame (M = n_components)
    mouth       [N] float32      2D mouth opening of the tracked landmarks
    mean        [D] float32      mean offset vector (D = 2 x landmarks used)
    basis       [M, D] float32   orthonormal PCA directions
    scale       [M] float32      standard deviation of each coefficient over the training frames
    index       [K] int64        landmark indices used (D = 2 K)
    version     [] int64         MOTION_VERSION
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thg_nerf.dataset import Dataset
from thg_nerf.preprocess.signals import mouth_opening
from thg_nerf.preprocess.topology import Topology

MOTION_FILE = "motion.npz"
MOTION_VERSION = 1
N_COMPONENTS = 16
#: Temporal smoothing of the landmark offsets (binomial kernel), against per-frame landmark jitter.
SMOOTH_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


@dataclass
class MotionTargets:
    """Per-frame motion codes of a clip and the PCA that defines them (see the module docstring)."""

    motion: np.ndarray
    mouth: np.ndarray
    mean: np.ndarray
    basis: np.ndarray
    scale: np.ndarray
    index: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.motion.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"motion": self.motion.astype(np.float32), "mouth": self.mouth.astype(np.float32),
                "mean": self.mean.astype(np.float32), "basis": self.basis.astype(np.float32),
                "scale": self.scale.astype(np.float32), "index": self.index.astype(np.int64),
                "version": np.array(MOTION_VERSION, dtype=np.int64)}

    def save(self, path: str | Path) -> None:
        """Write ``motion.npz`` (the caller makes it atomic)."""
        np.savez(path, **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> MotionTargets | None:
        """Read ``motion.npz``; None when absent or of another version (the caller recomputes it)."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                if int(z["version"]) != MOTION_VERSION:
                    return None
                return cls(**{k: z[k] for k in ("motion", "mouth", "mean", "basis", "scale", "index")})
        except (OSError, KeyError, ValueError):
            return None


def lower_face_indices(topo: Topology, shape: np.ndarray) -> np.ndarray:
    """Landmarks that carry speech motion: the lips, and the face-oval points below the nose tip in the
    identity ``shape`` [L, 3] (jaw line and chin)."""
    oval = np.asarray(topo.face_oval)
    jaw = oval[shape[oval, 1] < shape[topo.nose_tip, 1]]
    return np.unique(np.concatenate([np.asarray(topo.lips), jaw, [topo.chin]])).astype(np.int64)


def canonical_offsets(landmarks: np.ndarray, rotation: np.ndarray, translation: np.ndarray, shape: np.ndarray,
                      focal: float, cx: float, cy: float, index: np.ndarray) -> np.ndarray:
    """Expression offsets in head space [N, K, 2] of the landmarks ``index`` (see the module docstring).

    Args:
        landmarks: [N, L, 2] continuous pixel coordinates.
        rotation, translation: head-to-camera ``R`` [N, 3, 3] and ``t`` [N, 3] (OpenCV camera).
        shape: [L, 3] identity shape in head space.
    """
    r = np.asarray(rotation, np.float64)
    t = np.asarray(translation, np.float64)
    x = np.asarray(shape, np.float64)[index]                                # [K, 3]
    depth = np.einsum("nij,kj->nki", r, x)[..., 2] + t[:, None, 2]          # [N, K]
    uv = np.asarray(landmarks, np.float64)[:, index, :2]
    cam = np.stack([(uv[..., 0] - cx) / focal * depth, (uv[..., 1] - cy) / focal * depth, depth], axis=-1)
    head = np.einsum("nji,nkj->nki", r, cam - t[:, None, :])              # R^T (p - t)
    return (head - x[None])[..., :2]


def smooth_time(x: np.ndarray, kernel: np.ndarray = SMOOTH_KERNEL) -> np.ndarray:
    """Filter [N, ...] along time with a symmetric kernel (edges replicated)."""
    half = len(kernel) // 2
    pad = np.concatenate([np.repeat(x[:1], half, 0), x, np.repeat(x[-1:], half, 0)])
    return sum(k * pad[i:i + len(x)] for i, k in enumerate(kernel))


def compute_motion_targets(tracking: dict[str, np.ndarray], focal: float, cx: float, cy: float, topo: Topology,
                           train_ids: np.ndarray, n_components: int = N_COMPONENTS) -> MotionTargets:
    """Motion codes of every frame from ``tracking.npz`` arrays; the PCA is fitted on ``train_ids`` frames."""
    from thg_nerf.errors import ThgError

    if "shape" not in tracking:
        raise ThgError("tracking.npz has no identity 'shape': run 'thg-nerf preprocess --force' again")
    lm = np.asarray(tracking["landmarks"])
    index = lower_face_indices(topo, np.asarray(tracking["shape"]))
    off = canonical_offsets(lm, tracking["rotation"], tracking["translation"], tracking["shape"], focal, cx, cy,
                            index)
    flat = smooth_time(off.reshape(len(off), -1))
    fit = flat[np.asarray(train_ids, dtype=np.int64)]
    mean = fit.mean(0)
    _, sv, vt = np.linalg.svd(fit - mean, full_matrices=False)
    m = int(min(n_components, vt.shape[0]))
    basis = vt[:m]
    coeffs = (flat - mean) @ basis.T
    scale = np.maximum(sv[:m] / np.sqrt(max(1, len(fit) - 1)), 1e-6)
    return MotionTargets(motion=coeffs.astype(np.float32), mouth=mouth_opening(lm, topo.mouth).astype(np.float32),
                         mean=mean, basis=basis, scale=scale, index=index)


def dataset_motion(ds: Dataset, write: bool = True) -> MotionTargets:
    """The motion targets of a dataset: ``motion.npz`` when present and current, otherwise computed from
    ``tracking.npz`` (a migration for datasets written before motion targets existed) and, with ``write``,
    saved into the dataset directory when it is writable."""
    from thg_nerf.errors import ThgError
    from thg_nerf.log import get_logger
    from thg_nerf.preprocess.topology import get_topology
    from thg_nerf.utils.fs import atomic_file

    path = ds.root / MOTION_FILE
    cached = ds._cache.get("motion") or MotionTargets.load(path)
    if cached is not None:
        ds._cache["motion"] = cached
        return cached
    backend = str((ds.meta.get("landmarks") or {}).get("backend", "mediapipe"))
    intr = ds.intrinsics
    targets = compute_motion_targets(ds.tracking(), intr.focal, intr.cx, intr.cy, get_topology(backend),
                                     np.array([r.img_id for r in ds.train], dtype=np.int64))
    if write:
        try:
            with atomic_file(path, suffix=".npz") as tmp:
                targets.save(tmp)
            get_logger(__name__).info(f"computed motion targets for {ds.root} (written to {path.name})")
        except (OSError, ThgError):  # a read-only dataset: keep the targets in memory
            pass
    ds._cache["motion"] = targets
    return targets
