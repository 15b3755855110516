"""Provenance: an invisible, robust watermark on every rendered frame, its detector, and consent records.

Below ``render`` in the layer order (imports only ``utils``, ``errors`` and ``log``). Any new output path
(``dub``, ``serve``) marks its frames with :class:`Watermarker` right before writing them; see
docs/PROVENANCE.md for the method, its robustness and its limits.
"""

from thg_nerf.provenance.detect import Detection, verify_video
from thg_nerf.provenance.embed import Watermarker
from thg_nerf.provenance.payload import Payload

__all__ = ["Detection", "Payload", "Watermarker", "verify_video"]
