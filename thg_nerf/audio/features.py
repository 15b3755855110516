"""Per-video-frame audio feature windows, shared by preprocessing and rendering.

``extract_features(wave, sr, fps, n_frames, spec)`` returns ``[n_frames, T, C]`` float32: row ``i`` is a
window of ``T`` feature steps around video frame ``i``; step ``T // 2`` of row ``i`` lies exactly at time
``i / fps`` and neighbouring steps are one feature hop (20 ms) apart. Feature series are sampled at those
times by linear interpolation, so any video frame rate works.

Specs:

- ``mel`` (default, no weights): log-mel spectrogram of the 16 kHz wave, 25 ms Hann window, 20 ms hop
  (50 Hz), 32 mel bands 55-7600 Hz, ``T = 16`` steps (320 ms). Normalisation, per clip, in dB:
  a clip whose loudest frame RMS is below ``SILENCE_DBFS`` is silent; otherwise the speech level is the
  90th percentile of frame RMS over frames within ``ACTIVE_RANGE_DB`` of the loudest, and frames within
  ``SPEECH_GATE_DB`` of that level are speech; each band is referenced to its mean over speech frames
  (limited to ``TILT_DB`` below the loudest band, so empty bands stay silent). The feature is
  ``clip(dB - ref + FLOOR_DB, 0, FLOOR_DB + CEIL_DB) / DB_SCALE``: speech averages 2.0 per band whatever
  the gain, speaker or microphone, and silence (digital silence, anything ``FLOOR_DB`` below speech,
  a silent clip, padding beyond the clip) is exactly 0. Voice normalisation of another voice
  (``thg_nerf.audio.voice``) can warp the filterbank (``warp``) and stretch each band's deviation from its
  reference so that its spread over speech frames matches the person's (``spread``): ``clip((dB - ref) *
  scale + FLOOR_DB, ...)``.
- ``phones`` (needs the ``phones`` extra, pocketsphinx): soft one-hots over ``phones.PHONES`` (``SIL`` + the
  39 CMU English phones, ``C = 40``) of pocketsphinx's speaker-independent allphone decoder, on the mel grid
  (20 ms), ``T = 16`` steps; each step sums to 1 and silence / padding beyond the clip is the ``SIL`` one-hot
  (see ``thg_nerf/audio/phones.py``).
- ``mel+phones``: ``mel`` and ``phones`` concatenated along channels, ``T = 16``, ``C = 32 + 40``.
- ``hubert:DIR`` / ``wav2vec2:DIR``: last hidden states of a local ``transformers`` model (saved with
  ``save_pretrained``; nothing is downloaded) at its native 50 Hz, ``T = 2`` steps, ``C = hidden_size``.
  The wave is normalised to zero mean / unit variance unless DIR's ``preprocessor_config.json`` says
  ``do_normalize: false``. Long clips run in 30 s chunks with 1 s of context on each side.
- ``npy:FILE``: precomputed per-video-frame features from AD-NeRF / ER-NeRF (DeepSpeech ``[N, 16, 29]``,
  HuBERT ``[N, 2, 1024]`` or ``[N, 1024]``), assumed to span the same clip, linearly resampled in time to
  ``n_frames`` (``[N, C]`` becomes ``T = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.log import get_logger

log = get_logger(__name__)

SAMPLE_RATE = 16000
MEL_HOP = 320
MEL_WIN = 400
MEL_NFFT = 512
MEL_BINS = 32
MEL_STEPS = 16
MEL_FMIN, MEL_FMAX = 55.0, 7600.0
MODEL_STEPS = 2
SILENCE_DBFS = -60.0
ACTIVE_RANGE_DB = 50.0
SPEECH_GATE_DB = 25.0
TILT_DB = 30.0
FLOOR_DB = 40.0
CEIL_DB = 20.0
DB_SCALE = 20.0
#: Speech frames (20 ms) a clip needs before its band spread is matched to another voice's (fewer: left alone).
SPREAD_MIN_FRAMES = 100
#: Limits of the per-band spread-matching factor.
SPREAD_LIMITS = (0.5, 2.0)
MODEL_CHUNK_S = 30.0
MODEL_CONTEXT_S = 1.0
_KINDS = ("mel", "phones", "mel+phones", "hubert", "wav2vec2", "npy")
_GRID_KINDS = ("mel", "phones", "mel+phones")
_SPEC_HELP = "expected mel | phones | mel+phones | hubert:DIR | wav2vec2:DIR | npy:FILE"


@dataclass(frozen=True)
class AudioSpec:
    """A parsed feature spec: ``kind`` in ``_KINDS`` and its local ``path`` (None for mel / phones)."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def parse_spec(spec: str | AudioSpec, check_paths: bool = True) -> AudioSpec:
    """Validate a spec string; with ``check_paths`` also that the model directory / npy file / pocketsphinx exists."""
    if isinstance(spec, AudioSpec):
        parsed = spec
    else:
        text = str(spec).strip()
        kind, _, rest = text.partition(":")
        needs_path = kind not in _GRID_KINDS
        if kind not in _KINDS or needs_path != bool(rest.strip()) or (not needs_path and text != kind):
            raise ThgError(f"invalid audio feature spec {spec!r}: {_SPEC_HELP}")
        parsed = AudioSpec(kind, Path(rest.strip()).expanduser() if needs_path else None)
    if check_paths and parsed.kind in ("hubert", "wav2vec2"):
        if not (parsed.path / "config.json").is_file():
            raise ThgError(f"{parsed.kind} model directory not found or without config.json: {parsed.path} "
                           "(pass a local directory written by save_pretrained)")
    if check_paths and parsed.kind == "npy" and not parsed.path.is_file():
        raise ThgError(f"audio feature file not found: {parsed.path}")
    if check_paths and parsed.kind in ("phones", "mel+phones"):
        from thg_nerf.audio.phones import require_pocketsphinx

        require_pocketsphinx()
    return parsed


def feature_shape(spec: str | AudioSpec) -> tuple[int, int]:
    """(T, C) of the per-frame feature window for ``spec`` (reads only config / npy headers)."""
    s = parse_spec(spec)
    if s.kind in _GRID_KINDS:
        from thg_nerf.audio.phones import N_PHONES

        return MEL_STEPS, {"mel": MEL_BINS, "phones": N_PHONES, "mel+phones": MEL_BINS + N_PHONES}[s.kind]
    if s.kind == "npy":
        shape = _load_npy(s.path).shape
        return (1, shape[1]) if len(shape) == 2 else (shape[1], shape[2])
    from thg_nerf.utils.fs import read_json

    return MODEL_STEPS, int(read_json(s.path / "config.json")["hidden_size"])


def extract_features(wave: np.ndarray, sr: int, fps: float, n_frames: int, spec: str | AudioSpec = "mel",
                     warp: float = 1.0, spread: np.ndarray | None = None) -> np.ndarray:
    """Audio feature windows of each video frame: [n_frames, T, C] float32 (see the module docstring).

    ``warp``: frequency warp of the log-mel filterbank (vocal tract length normalisation); ``spread``: per-band
    spread [C] to match the log-mel bands' to (:func:`normalise_log_mel`). Both for mel specs only.
    """
    s = parse_spec(spec)
    if fps <= 0 or n_frames <= 0:
        raise ValueError(f"need fps > 0 and n_frames > 0, got {fps}, {n_frames}")
    if s.kind == "npy":
        return _npy_features(s.path, n_frames)
    wave = resample(wave, sr, SAMPLE_RATE)
    if s.kind in _GRID_KINDS:
        parts = []
        if s.kind != "phones":
            series = normalise_log_mel(*log_mel(wave, warp=warp), spread=spread)
            parts.append(window_series(series, MEL_HOP / SAMPLE_RATE, 0.0, fps, n_frames, MEL_STEPS, fill=0.0))
        if s.kind != "mel":
            from thg_nerf.audio.phones import onehot_silence, phone_posteriors

            parts.append(window_series(phone_posteriors(wave), MEL_HOP / SAMPLE_RATE, 0.0, fps, n_frames,
                                       MEL_STEPS, fill=onehot_silence()))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
    series, hop_s, t0 = _model_series(wave, s)
    return window_series(series, hop_s, t0, fps, n_frames, MODEL_STEPS, fill=None)


def resample(wave: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Polyphase resampling of a mono wave [n] to ``target`` Hz (float32)."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if int(sr) == int(target):
        return wave
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(sr), int(target))
    return resample_poly(wave, int(target) // g, int(sr) // g).astype(np.float32)


def window_series(series: np.ndarray, hop_s: float, t0: float, fps: float, n_frames: int, steps: int,
                  fill: float | np.ndarray | None) -> np.ndarray:
    """Sample a feature series [M, C] (step j at time t0 + j * hop_s) at the window times of each frame.

    Returns [n_frames, steps, C] float32; step k of row i is at ``i / fps + (k - steps // 2) * hop_s``.
    Times outside the series get ``fill`` (a scalar or a [C] row; the nearest edge step when ``fill`` is None).
    """
    times = np.arange(n_frames)[:, None] / fps + (np.arange(steps) - steps // 2)[None, :] * hop_s
    pos = (times - t0) / hop_s
    p0 = np.floor(pos)
    w = (pos - p0)[..., None].astype(np.float32)
    last = len(series) - 1
    i0 = np.clip(p0, 0, last).astype(np.int64)
    i1 = np.clip(p0 + 1, 0, last).astype(np.int64)
    out = series[i0] * (1.0 - w) + series[i1] * w
    if fill is not None:
        out[(pos < -1e-6) | (pos > last + 1e-6)] = fill
    return out.astype(np.float32)


def mel_edges(n_mels: int = MEL_BINS, fmin: float = MEL_FMIN, fmax: float = MEL_FMAX) -> np.ndarray:
    """[n_mels + 2] HTK-mel spaced edges (Hz) of the triangular filters: band ``k`` rises from ``edges[k]``,
    peaks at ``edges[k + 1]`` and falls to ``edges[k + 2]``."""
    def to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    return 700.0 * (10.0 ** (np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2) / 2595.0) - 1.0)


@lru_cache(maxsize=64)
def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = MEL_NFFT, n_mels: int = MEL_BINS,
                   fmin: float = MEL_FMIN, fmax: float = MEL_FMAX, warp: float = 1.0) -> np.ndarray:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1], area-normalised (Slaney style; cached, read-only).

    ``warp``: the filters of the wave with every frequency scaled by ``warp`` (vocal tract length
    normalisation, ``thg_nerf.audio.voice``): band edges divided by ``warp``; parts beyond Nyquist are empty.
    """
    edges = mel_edges(n_mels, fmin, fmax) / warp
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    tri = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    fb = (tri * (2.0 / (hi - lo))).astype(np.float32)
    fb.setflags(write=False)
    return fb


def stft_frames(wave: np.ndarray) -> np.ndarray:
    """Analysis frames [M, MEL_WIN] of a 16 kHz wave (a strided view): frame j centred at sample j * MEL_HOP."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    padded = np.pad(wave, (MEL_WIN // 2, MEL_WIN // 2))
    return np.lib.stride_tricks.sliding_window_view(padded, MEL_WIN)[::MEL_HOP][: len(wave) // MEL_HOP + 1]


def power_spectrum(frames: np.ndarray) -> np.ndarray:
    """Hann-windowed power spectrum [M, MEL_NFFT // 2 + 1] float32 of analysis frames [M, MEL_WIN]."""
    window = np.hanning(MEL_WIN + 1)[:-1].astype(np.float32)
    return (np.abs(np.fft.rfft(frames * window, n=MEL_NFFT)) ** 2).astype(np.float32)


def frame_level_db(frames: np.ndarray) -> np.ndarray:
    """RMS level [M] (dBFS, float32) of analysis frames [M, MEL_WIN]."""
    return (10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)).astype(np.float32)


def mel_db(power: np.ndarray, warp: float = 1.0) -> np.ndarray:
    """Log-mel power (dB, float32) [..., MEL_BINS] of power spectra [..., MEL_NFFT // 2 + 1] through the
    filterbank warped by ``warp`` (see :func:`mel_filterbank`; 1 = none)."""
    return (10.0 * np.log10(power @ mel_filterbank(warp=float(warp)).T + 1e-12)).astype(np.float32)


def log_mel(wave: np.ndarray, chunk: int = 8192, warp: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel power of a 16 kHz wave: ([M, MEL_BINS] dB, [M] frame RMS in dBFS); frame j centred at j*hop.

    ``warp``: frequency warp of the filterbank (see :func:`mel_filterbank`); 1 = none.
    """
    frames = stft_frames(wave)
    db = np.empty((len(frames), MEL_BINS), np.float32)
    for a in range(0, len(frames), chunk):
        db[a:a + chunk] = mel_db(power_spectrum(frames[a:a + chunk]), warp)
    return db, frame_level_db(frames)


def active_frames(frame_db: np.ndarray) -> np.ndarray:
    """Non-silent frames [M] bool from frame RMS [M] dBFS: within ACTIVE_RANGE_DB of the loudest, in a clip
    whose loudest frame reaches SILENCE_DBFS."""
    if len(frame_db) == 0 or frame_db.max() < SILENCE_DBFS:
        return np.zeros(len(frame_db), dtype=bool)
    return frame_db > frame_db.max() - ACTIVE_RANGE_DB


def speech_frames(frame_db: np.ndarray) -> np.ndarray:
    """Speech frames [M] bool (the mel normalisation's energy mask): active frames within SPEECH_GATE_DB of
    the speech level (90th percentile of active frame RMS)."""
    active = active_frames(frame_db)
    if not active.any():
        return active
    level = np.percentile(frame_db[active], 90)
    return active & (frame_db >= level - SPEECH_GATE_DB)


def normalise_log_mel(db: np.ndarray, frame_db: np.ndarray, spread: np.ndarray | None = None) -> np.ndarray:
    """Loudness/channel-normalised log-mel [M, C] in [0, 3]; silence is exactly 0 (see module docstring).

    ``spread``: per-band spread [C] (dB, :func:`band_spread`) of another voice to match this clip's to
    (:func:`spread_scale`; voice normalisation); None = leave it.
    """
    ref = mel_reference(db, frame_db)
    if ref is None:
        return np.zeros_like(db)
    scale = None if spread is None else spread_scale(spread, band_spread(db, frame_db, ref))
    return apply_mel_reference(db, ref, scale)


def mel_reference(db: np.ndarray, frame_db: np.ndarray, min_speech: int = 1) -> np.ndarray | None:
    """Per-band dB reference [C] of log-mel frames ``db`` [M, C] (their speech frames' mean, tilt-limited);
    None when fewer than ``min_speech`` frames are speech (see the module docstring)."""
    speech = speech_frames(frame_db)
    if speech.sum() < max(1, min_speech):
        return None
    ref = db[speech].mean(axis=0)
    return np.maximum(ref, ref.max() - TILT_DB)


def apply_mel_reference(db: np.ndarray, ref: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Log-mel dB [..., C] referenced to ``ref`` [C] -> features in [0, 3] (float32); ``scale`` [C] first
    stretches each band's deviation from its reference (see :func:`spread_scale`)."""
    dev = db - ref if scale is None else (db - ref) * scale
    return (np.clip(dev + FLOOR_DB, 0.0, FLOOR_DB + CEIL_DB) / DB_SCALE).astype(np.float32)


def band_spread(db: np.ndarray, frame_db: np.ndarray, ref: np.ndarray,
                min_speech: int = SPREAD_MIN_FRAMES) -> np.ndarray | None:
    """Per-band spread [C] (dB): the standard deviation over speech frames of log-mel ``db`` [M, C] referenced to
    ``ref`` [C], within the range features represent; None with fewer than ``min_speech`` speech frames."""
    speech = speech_frames(frame_db)
    if speech.sum() < max(2, min_speech):
        return None
    return np.clip(db[speech] - ref, -FLOOR_DB, CEIL_DB).std(axis=0).astype(np.float32)


def spread_scale(target: np.ndarray, own: np.ndarray | None) -> np.ndarray | None:
    """Per-band factor [C] that gives a voice of spread ``own`` [C] the spread ``target`` [C] (both from
    :func:`band_spread`), limited to ``SPREAD_LIMITS``; None when ``own`` is unknown (too little speech)."""
    if own is None:
        return None
    return np.clip(np.asarray(target, np.float32) / np.maximum(own, 1e-3), *SPREAD_LIMITS).astype(np.float32)


def _npy_features(path: Path, n_frames: int) -> np.ndarray:
    """Precomputed per-frame features [N, T, C] or [N, C], linearly resampled to [n_frames, T, C]."""
    arr = np.asarray(_load_npy(path), dtype=np.float32)
    arr = arr[:, None, :] if arr.ndim == 2 else arr
    n = len(arr)
    if abs(n - n_frames) > 0.05 * n_frames:
        log.warning("%s has %d feature frames for %d video frames; resampling in time", path, n, n_frames)
    pos = np.minimum(np.arange(n_frames) * (n / n_frames), n - 1)
    p0 = np.floor(pos).astype(np.int64)
    p1 = np.minimum(p0 + 1, n - 1)
    w = (pos - p0).astype(np.float32)[:, None, None]
    return (arr[p0] * (1.0 - w) + arr[p1] * w).astype(np.float32)


def _load_npy(path: Path) -> np.ndarray:
    """Memory-map a features npy and check its shape ([N, T, C] or [N, C], N >= 1, finite dims)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ThgError(f"cannot read audio features {path}: {str(e).splitlines()[0][:120]}") from None
    if arr.ndim not in (2, 3) or min(arr.shape) < 1 or not np.issubdtype(arr.dtype, np.number):
        raise ThgError(f"audio features {path} must be a numeric [N, T, C] or [N, C] array, got shape "
                       f"{list(arr.shape)} ({arr.dtype})")
    return arr


def _conv_geometry(config) -> tuple[int, int]:
    """(receptive field, stride) in samples of a wav2vec2-style convolutional feature encoder."""
    rf, jump = 1, 1
    for k, s in zip(config.conv_kernel, config.conv_stride):
        rf += (k - 1) * jump
        jump *= s
    return rf, jump


def _model_series(wave: np.ndarray, spec: AudioSpec) -> tuple[np.ndarray, float, float]:
    """Last hidden states [M, C] of a local HuBERT / wav2vec2 model, with their hop and first time (s)."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        raise MissingDependencyError("transformers", "hubert", f"{spec.kind} audio features") from None
    from thg_nerf.utils.fs import read_json

    try:
        model = AutoModel.from_pretrained(str(spec.path), local_files_only=True).eval()
    except (OSError, ValueError, KeyError) as e:
        raise ThgError(f"cannot load {spec.kind} model from {spec.path}: {str(e).splitlines()[0][:160]}") \
            from None
    if getattr(model.config, "model_type", spec.kind) != spec.kind:
        log.warning("%s holds a %s model, used as %s", spec.path, model.config.model_type, spec.kind)
    pre = spec.path / "preprocessor_config.json"
    if not pre.is_file() or read_json(pre).get("do_normalize", True):
        wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    rf, jump = _conv_geometry(model.config)
    wave = np.pad(wave, (0, max(0, rf - len(wave))))
    n_out = (len(wave) - rf) // jump + 1
    chunk, ctx = int(MODEL_CHUNK_S * SAMPLE_RATE / jump), int(MODEL_CONTEXT_S * SAMPLE_RATE / jump)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    parts = []
    with torch.inference_mode():
        for a in range(0, n_out, chunk):
            b = min(a + chunk, n_out)
            lo, hi = max(0, a - ctx), min(n_out, b + ctx)
            end = len(wave) if hi == n_out else (hi - 1) * jump + rf
            x = torch.from_numpy(np.ascontiguousarray(wave[lo * jump:end])).to(device)
            hidden = model(x[None].float()).last_hidden_state[0]
            parts.append(hidden[a - lo:b - lo].float().cpu().numpy())
    return np.concatenate(parts), jump / SAMPLE_RATE, 0.5 * rf / SAMPLE_RATE
