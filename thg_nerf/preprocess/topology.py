"""Landmark topologies: the semantic index sets the tracker, masks and blink signal need.

The mediapipe face mesh (478 points with refined irises) takes its sets from mediapipe's own
``face_mesh_connections``; the 68-point iBUG layout (``face-alignment``) is the standard published numbering.
"Left"/"right" are the subject's: the subject's left eye appears on the image right in a frontal view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from thg_nerf.errors import MissingDependencyError


@dataclass(frozen=True)
class Topology:
    """Index sets of one landmark layout (all tuples of landmark indices)."""

    name: str
    n: int
    face_oval: tuple[int, ...]
    """Closed outline of the face, ordered from the top of the forehead towards the subject's left."""
    left_eye: tuple[int, ...]
    """Contour of the subject's left eye (its centroid approximates the pupil at rest)."""
    right_eye: tuple[int, ...]
    left_ear: tuple[int, ...]
    """Six eye-aspect-ratio points ``p1..p6``: corner, upper, upper, corner, lower, lower."""
    right_ear: tuple[int, ...]
    lips: tuple[int, ...]
    """Outer and inner lip contours."""
    brows: tuple[int, ...]
    irises: tuple[int, ...]
    nose_tip: int
    chin: int
    top: tuple[int, ...]
    """Points whose mean is the top of the face (forehead or brow centre)."""
    mouth: tuple[int, int, int, int] = (13, 14, 61, 291)
    """Inner-lip midpoints (upper, lower) and the mouth corners (subject's right, left)."""

    @property
    def eyes(self) -> tuple[int, ...]:
        return self.left_eye + self.right_eye

    def nonrigid(self) -> set[int]:
        """Landmarks that move with expressions (eyelids, lips, brows, irises); the jaw is handled by height."""
        return set(self.eyes) | set(self.lips) | set(self.brows) | set(self.irises)


def order_loop(edges: Iterable[tuple[int, int]], start: int, second_half: int | None = None) -> list[int]:
    """Order the vertices of a closed edge loop, starting at ``start``.

    The direction is chosen so that ``second_half`` (if given) lies in the second half of the walk.
    """
    adj: dict[int, list[int]] = {}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    loop, prev, cur = [start], None, start
    while True:
        nxt = [v for v in adj[cur] if v != prev]
        if not nxt or nxt[0] == start:
            break
        prev, cur = cur, nxt[0]
        loop.append(cur)
    if second_half is not None and loop.index(second_half) < len(loop) / 2:
        loop = [loop[0]] + loop[1:][::-1]
    return loop


@lru_cache(maxsize=1)
def mediapipe_topology() -> Topology:
    """The 478-point mediapipe face mesh (refine_landmarks=True)."""
    try:
        from mediapipe.python.solutions import face_mesh_connections as fmc
    except ImportError:
        raise MissingDependencyError("mediapipe", extra="preprocess", purpose="face landmarks") from None

    def pts(edges) -> tuple[int, ...]:
        return tuple(sorted({i for e in edges for i in e}))

    lips = pts(fmc.FACEMESH_LIPS)
    return Topology(
        name="mediapipe", n=478,
        face_oval=tuple(order_loop(fmc.FACEMESH_FACE_OVAL, 10, second_half=234)),
        left_eye=tuple(order_loop(fmc.FACEMESH_LEFT_EYE, 263, second_half=386)),
        right_eye=tuple(order_loop(fmc.FACEMESH_RIGHT_EYE, 33, second_half=159)),
        left_ear=(362, 385, 387, 263, 373, 380),
        right_ear=(33, 160, 158, 133, 153, 144),
        lips=lips,
        brows=pts(fmc.FACEMESH_LEFT_EYEBROW) + pts(fmc.FACEMESH_RIGHT_EYEBROW),
        irises=tuple(range(468, 478)),
        nose_tip=1, chin=152, top=(10,), mouth=(13, 14, 61, 291),
    )


@lru_cache(maxsize=1)
def ibug68_topology() -> Topology:
    """The 68-point iBUG layout used by face-alignment (jaw 0-16, brows 17-26, nose 27-35, eyes, mouth)."""
    return Topology(
        name="ibug68", n=68,
        face_oval=(24, 25, 26) + tuple(range(16, -1, -1)) + (17, 18, 19, 20, 21, 22, 23),
        left_eye=tuple(range(42, 48)), right_eye=tuple(range(36, 42)),
        left_ear=(42, 43, 44, 45, 46, 47), right_ear=(36, 37, 38, 39, 40, 41),
        lips=tuple(range(48, 68)), brows=tuple(range(17, 27)), irises=(),
        nose_tip=30, chin=8, top=(21, 22), mouth=(62, 66, 48, 54),
    )


def get_topology(backend: str) -> Topology:
    """The topology produced by a landmark backend (``mediapipe`` or ``face-alignment``)."""
    return ibug68_topology() if backend == "face-alignment" else mediapipe_topology()
