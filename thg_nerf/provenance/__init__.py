"""Provenance: an invisible, robust watermark on every rendered frame, its detector, and consent records.

Below ``render`` in the layer order (imports only ``utils``, ``errors`` and ``log``). Every output path marks
its frames right before writing them: ``MarkedWriter(writer, watermarker_for_run(run_dir / "run.json",
tool))`` (``render`` does it in ``thg_nerf.render.output.open_output``; ``dub`` and ``serve`` will do the
same). See docs/PROVENANCE.md for the method, its robustness and its limits.
"""

from thg_nerf.provenance.detect import Detection, verify_video
from thg_nerf.provenance.embed import MarkedWriter, Watermarker
from thg_nerf.provenance.payload import Payload
from thg_nerf.provenance.records import consent_from_flag, consent_record, payload_for_run, watermarker_for_run

__all__ = ["Detection", "MarkedWriter", "Payload", "Watermarker", "consent_from_flag", "consent_record",
           "payload_for_run", "verify_video", "watermarker_for_run"]
