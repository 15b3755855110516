"""English phone soft one-hots from pocketsphinx's speaker-independent allphone decoder (offline).

``phone_posteriors(wave)`` turns a 16 kHz mono wave into ``[M, N_PHONES]`` float32 rows on the mel grid (row
``k`` at time ``k * 20 ms``, ``M = len(wave) // 320 + 1``), each row summing to 1 over ``PHONES``: the 39 CMU
phones plus ``SIL`` (index 0). pocketsphinx 5's Python API exposes no frame posteriors (allphone search has no
lattice or n-best and its segment ``prob`` is always 1), so the rows are soft one-hots of the best phone
segmentation: 10 ms labels, box-smoothed over ``RAMP_FRAMES`` (a linear ramp of 30 ms at each boundary), then
linearly interpolated to the 20 ms grid.

Decoding uses the US-English acoustic model and phone language model shipped in the pocketsphinx wheel with CMU's
phoneme-recognition settings (``lw`` 2, ``beam``/``pbeam`` 1e-20). The filler phones ``+NSN+`` (noise) and
``+SPN+`` (speech noise) count as ``SIL``. Long clips run in ``CHUNK_S`` chunks with ``CONTEXT_S`` of audio on
each side, each by a fresh decoder, so the result depends on nothing but the wave (deterministic). Rows that
are not ``features.active_frames`` (more than ``ACTIVE_RANGE_DB`` below the loudest frame, or a whole clip below
``SILENCE_DBFS``) are ``SIL`` whatever the decoder says (it labels digital silence as a fricative), so digital
silence, a silent clip and an empty wave give ``SIL`` only.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from scipy.ndimage import uniform_filter1d

from thg_nerf.audio.features import MEL_HOP, SAMPLE_RATE, active_frames, log_mel, window_series
from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.log import progress

PHONES: tuple[str, ...] = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
    "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH",
)
"""Phone set of the feature channels, in channel order; ``SIL`` (channel 0) is silence."""
N_PHONES = len(PHONES)
SIL = 0
BILABIALS: tuple[str, ...] = ("B", "M", "P")
"""Phones made with closed lips (useful to check lip closures)."""
FRAME_HOP = 160
"""pocketsphinx frame hop in samples (10 ms); frame ``j`` spans samples ``[j * 160, j * 160 + 410)``."""
FRAME_CENTRE_S = 0.025625 / 2
"""Offset of a pocketsphinx frame's centre from its start (half its 25.625 ms window)."""
RAMP_FRAMES = 3
CHUNK_S = 30.0
CONTEXT_S = 1.0
DECODER_ARGS = {"lw": 2.0, "beam": 1e-20, "pbeam": 1e-20, "frate": 100, "samprate": SAMPLE_RATE}
_INDEX = {p: i for i, p in enumerate(PHONES)}


def require_pocketsphinx() -> None:
    """Raise MissingDependencyError (one line) unless ``pocketsphinx`` is importable."""
    if importlib.util.find_spec("pocketsphinx") is None:
        raise MissingDependencyError("pocketsphinx", "phones", "phones audio features")


def phone_posteriors(wave: np.ndarray) -> np.ndarray:
    """Phone soft one-hots [M, N_PHONES] float32 of a 16 kHz wave [n]; row k at k * 20 ms (module docstring)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    active = active_frames(log_mel(wave)[1])
    labels = phone_labels(wave, active)
    smooth = uniform_filter1d(np.eye(N_PHONES, dtype=np.float32)[labels], RAMP_FRAMES, axis=0, mode="nearest")
    fps = SAMPLE_RATE / MEL_HOP  # one output row per mel frame
    rows = window_series(smooth, FRAME_HOP / SAMPLE_RATE, FRAME_CENTRE_S, fps, len(active), 1, None)[:, 0]
    rows[~active] = onehot_silence()
    return rows


def onehot_silence() -> np.ndarray:
    """The ``SIL`` row [N_PHONES] float32."""
    return np.eye(N_PHONES, dtype=np.float32)[SIL]


def phone_labels(wave: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
    """Best phone index (into PHONES) of each 10 ms pocketsphinx frame of a 16 kHz wave: [len // 160 + 1] int64.

    ``active`` ([M] bool on the 20 ms mel grid, see ``features.active_frames``) lets chunks without any active
    frame skip decoding (they are all ``SIL``); frames the decoder leaves unlabelled are ``SIL``.
    """
    require_pocketsphinx()
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    n = len(wave) // FRAME_HOP + 1
    labels = np.full(n, SIL, dtype=np.int64)
    chunk, ctx = int(CHUNK_S * SAMPLE_RATE / FRAME_HOP), int(CONTEXT_S * SAMPLE_RATE / FRAME_HOP)
    per_mel = MEL_HOP // FRAME_HOP
    pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).round().astype("<i2")
    starts = range(0, n, chunk)
    for a in progress(starts, desc="phones", unit="chunk") if len(starts) > 1 else starts:
        b = min(a + chunk, n)
        if active is not None and not active[a // per_mel:(b - 1) // per_mel + 1].any():
            continue
        lo = max(0, a - ctx)
        for phone, first, last in _decode(pcm[lo * FRAME_HOP:(b + ctx) * FRAME_HOP]):
            s, e = max(first + lo, a), min(last + lo + 1, b)
            if s < e:
                labels[s:e] = _INDEX.get(phone, SIL)
    return labels


def _decode(pcm: np.ndarray) -> list[tuple[str, int, int]]:
    """Allphone segmentation of 16-bit PCM [n]: (phone, first frame, last frame) with 10 ms frames."""
    import pocketsphinx

    try:
        decoder = pocketsphinx.Decoder(allphone=pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin"),
                                       lm=None, loglevel="FATAL", **DECODER_ARGS)
    except (RuntimeError, ValueError) as e:
        raise ThgError(f"cannot start the pocketsphinx phone decoder: {str(e).splitlines()[0][:160]} "
                       "(reinstall it with: pip install 'thg-nerf[phones]')") from None
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    return [(s.word, s.start_frame, s.end_frame) for s in decoder.seg() or ()]
