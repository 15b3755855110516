"""Streaming audio features: per-video-frame ``mel`` windows of a live 16 kHz stream, fed in chunks of any size.

The log-mel frames are exactly those of :func:`thg_nerf.audio.features.log_mel` on the whole stream, and the
windows are sampled exactly as :func:`~thg_nerf.audio.features.window_series` samples them (same times, same
silence padding before the start and, after :meth:`StreamingFeatures.flush`, beyond the end). What differs from
offline extraction is the normalisation: ``normalise_log_mel`` references every band to the speech of the
*whole clip*, which a live stream does not have. Here each log-mel frame is referenced, once, when it arrives,
to the speech of the last ``history_s`` seconds up to and including it (the same speech-level gate and band
reference, :func:`~thg_nerf.audio.features.mel_reference`, over a sliding window, updated every 100 ms).
Warm-up: the window grows from the start of the stream, and frames stay at silence (0) until ``min_speech_s``
of speech has been heard, so the first syllable is not normalised against itself alone. After a few seconds
of speech the features match the per-clip ones closely (measured: docs/BENCHMARKS.md, section Serve).

Voice normalisation (``voice``, see :mod:`thg_nerf.audio.voice`): offline, one filterbank warp is estimated
from the whole clip; here it is re-estimated every ``WARP_EVERY`` log-mel frames (2 s) from the speech of the
normalisation history (at most ``WARP_FRAMES`` frames of it, evenly spaced), starting once
``MIN_SPEECH_FRAMES`` of speech have been heard (warp 1 before), and each new log-mel frame uses the current
warp (the history is re-filtered when it changes); the band spread scale is re-estimated with it, from the
history's speech. Cost: about 0.5 % of one core per stream.

The output depends only on the samples, never on how they were split into chunks: a file streamed offline
through :meth:`TalkingHead.stream` and the same audio sent to ``thg-nerf serve`` in 20 ms packets give the same
windows (up to float rounding). Video frame ``i`` is ready once the audio up to ``i / fps + lookahead_s`` has
arrived (half the 320 ms window plus half an FFT window: about 170 ms).
"""

from __future__ import annotations

import math

import numpy as np

from thg_nerf.audio.features import (
    MEL_BINS,
    MEL_HOP,
    MEL_NFFT,
    MEL_STEPS,
    MEL_WIN,
    SAMPLE_RATE,
    apply_mel_reference,
    band_spread,
    frame_level_db,
    mel_db,
    mel_reference,
    parse_spec,
    power_spectrum,
    speech_frames,
    spread_scale,
    stft_frames,
    window_series,
)
from thg_nerf.audio.voice import MIN_SPEECH_FRAMES, VoiceModel
from thg_nerf.errors import ThgError

#: Seconds of past audio the running normalisation references each new frame to.
HISTORY_S = 20.0
#: Speech heard before features leave silence at the start of a stream (warm-up).
MIN_SPEECH_S = 0.1
#: The reference is recomputed every this many log-mel frames (100 ms), and every frame until it first exists.
REF_EVERY = 5
#: The voice-normalisation warp is re-estimated every this many log-mel frames (2 s).
WARP_EVERY = 100
#: At most this many of the history's speech frames (evenly spaced) are scored per re-estimate.
WARP_FRAMES = 300
_HOP_S = MEL_HOP / SAMPLE_RATE


def check_stream_spec(spec: str) -> None:
    """One-line ThgError unless audio features ``spec`` can be computed from a live stream (``mel`` only)."""
    if parse_spec(spec, check_paths=False).kind != "mel":
        raise ThgError(f"live streaming needs a run trained on 'mel' audio features; this run uses '{spec}'")


def as_float_wave(samples: np.ndarray) -> np.ndarray:
    """Mono samples [n] as float32 in [-1, 1] (int16 PCM is scaled by 1/32768); one-line ThgError otherwise."""
    a = np.asarray(samples)
    if a.ndim != 1:
        raise ThgError(f"audio chunks must be mono [n] arrays, got shape {list(a.shape)}")
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ThgError("audio chunk holds non-finite samples")
    return a


class StreamingFeatures:
    """Incremental ``mel`` feature windows [k, T, C] of video frames at ``fps`` (see the module docstring).

    >>> feats = StreamingFeatures(fps=25.0)
    >>> for chunk in chunks:            # 16 kHz mono, any chunk size
    ...     windows = feats.push(chunk)  # [k, 16, 32]: the frames whose look-ahead is complete
    >>> tail = feats.flush()             # the last frames, padded with silence like the end of a clip
    """

    def __init__(self, fps: float, history_s: float = HISTORY_S, min_speech_s: float = MIN_SPEECH_S,
                 voice: VoiceModel | None = None) -> None:
        if fps <= 0:
            raise ThgError(f"fps must be > 0, got {fps}")
        self.fps = float(fps)
        self.history = max(1, int(round(history_s / _HOP_S)))
        self.min_speech = max(1, int(round(min_speech_s / _HOP_S)))
        self.samples_in = 0
        """Samples pushed so far."""
        self.frames_out = 0
        """Video frames returned so far (the index of the next one)."""
        self._wave = np.zeros(0, np.float32)
        self._wave_start = 0          # absolute sample index of _wave[0]
        self._n_mel = 0               # log-mel frames computed so far
        self._hist_db = np.zeros((2 * self.history, MEL_BINS), np.float32)  # the last `history` frames, in place
        self._hist_level = np.zeros(2 * self.history, np.float32)
        self._hist_pow = np.zeros((2 * self.history, MEL_NFFT // 2 + 1), np.float32) if voice else None
        self._hist_n = 0
        self.voice = voice
        self.warp = 1.0
        """The filterbank warp new log-mel frames get (voice normalisation; 1 without a voice model)."""
        self._ref: np.ndarray | None = None
        self._scale: np.ndarray | None = None  # voice normalisation's band spread scale [C] (None: 1)
        self._series = np.zeros((0, MEL_BINS), np.float32)
        self._series_start = 0        # absolute mel index of _series[0]
        self._closed = False

    @property
    def lookahead_s(self) -> float:
        """Audio past a frame's time needed before it is ready (upper bound over frames)."""
        return (MEL_STEPS - 1 - MEL_STEPS // 2 + 2) * _HOP_S + 0.5 * MEL_WIN / SAMPLE_RATE

    @property
    def time_s(self) -> float:
        """Duration of the audio pushed so far."""
        return self.samples_in / SAMPLE_RATE

    def samples_needed(self, frame: int) -> int:
        """Samples that must have been pushed before frame ``frame`` is ready (mid-stream)."""
        mel = int(math.floor(frame / self.fps / _HOP_S + 1e-9)) + (MEL_STEPS - 1 - MEL_STEPS // 2) + 1
        return mel * MEL_HOP + MEL_WIN // 2

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add 16 kHz mono samples (float in [-1, 1] or int16); returns the windows [k, T, C] now ready."""
        if self._closed:
            raise ThgError("this audio stream was flushed; start a new one")
        wave = as_float_wave(samples)
        self._wave = np.concatenate([self._wave, wave])
        self.samples_in += wave.size
        # mel frame j is centred on sample j * HOP and needs samples up to j * HOP + WIN / 2
        ready = (self.samples_in - MEL_WIN // 2) // MEL_HOP + 1 if self.samples_in >= MEL_WIN // 2 else 0
        self._add_mel(ready, pad=False)
        return self._windows(final=False)

    def flush(self) -> np.ndarray:
        """End of stream: the remaining windows of the ``round(duration * fps)`` frames, silence beyond the end."""
        if not self._closed:
            self._closed = True
            self._add_mel(self.samples_in // MEL_HOP + 1 if self.samples_in else 0, pad=True)
        return self._windows(final=True)

    # ------------------------------------------------------------ internals

    def _add_mel(self, upto: int, pad: bool) -> None:
        """Compute log-mel frames ``_n_mel .. upto - 1``, normalise them and append them to the series."""
        j0 = self._n_mel
        if upto <= j0:
            return
        a = max(0, (j0 - 1) * MEL_HOP)  # one frame early, so frame j0's left half is real audio (see log_mel)
        end = (upto - 1) * MEL_HOP + MEL_WIN // 2
        x = self._wave[a - self._wave_start:end - self._wave_start]
        if pad and x.size < end - a:
            x = np.pad(x, (0, end - a - x.size))
        frames = stft_frames(x)
        skip = 0 if j0 == 0 else 1
        frames = frames[skip:skip + upto - j0]
        power, level = power_spectrum(frames), frame_level_db(frames)
        out = np.empty((len(power), MEL_BINS), np.float32)
        for k in range(len(power)):
            if self.voice is not None and (j0 + k) % WARP_EVERY == 0 and j0 + k:
                self._update_warp()
            db = mel_db(power[k], self.warp)
            self._remember(db, level[k], power[k])
            if self._ref is None or (j0 + k) % REF_EVERY == 0:
                n = self._hist_n
                self._ref = mel_reference(self._hist_db[n - self.history_len:n],
                                          self._hist_level[n - self.history_len:n], self.min_speech)
            out[k] = 0.0 if self._ref is None else apply_mel_reference(db, self._ref, self._scale)
        self._series = np.concatenate([self._series, out])
        self._n_mel = upto
        keep = max(0, (upto - 1) * MEL_HOP - self._wave_start)
        self._wave = self._wave[keep:]
        self._wave_start += keep

    @property
    def history_len(self) -> int:
        return min(self._hist_n, self.history)

    def _remember(self, db: np.ndarray, level: float, power: np.ndarray) -> None:
        """Append one log-mel frame to the normalisation history (a buffer of twice its length, shifted when full)."""
        if self._hist_n == len(self._hist_level):
            keep = self.history - 1
            self._hist_db[:keep] = self._hist_db[self._hist_n - keep:self._hist_n]
            self._hist_level[:keep] = self._hist_level[self._hist_n - keep:self._hist_n]
            if self._hist_pow is not None:
                self._hist_pow[:keep] = self._hist_pow[self._hist_n - keep:self._hist_n]
            self._hist_n = keep
        self._hist_db[self._hist_n] = db
        self._hist_level[self._hist_n] = level
        if self._hist_pow is not None:
            self._hist_pow[self._hist_n] = power
        self._hist_n += 1

    def _update_warp(self) -> None:
        """Re-estimate the voice warp from the history's speech (on a change, re-filter the history), then the
        band spread scale (when the voice model has a spread)."""
        lo, n = self._hist_n - self.history_len, self._hist_n
        speech = np.nonzero(speech_frames(self._hist_level[lo:n]))[0]
        if len(speech) < MIN_SPEECH_FRAMES:
            return
        if len(speech) > WARP_FRAMES:
            speech = speech[np.linspace(0, len(speech) - 1, WARP_FRAMES).astype(np.int64)]
        warp = self.voice.estimate_warp_power(self._hist_pow[lo:n][speech])
        if abs(warp - self.warp) >= 1e-3:
            self.warp = warp
            self._hist_db[lo:n] = mel_db(self._hist_pow[lo:n], warp)
            self._ref = mel_reference(self._hist_db[lo:n], self._hist_level[lo:n], self.min_speech)
        if self.voice.band_sd is not None and self._ref is not None:
            self._scale = spread_scale(self.voice.band_sd,
                                       band_spread(self._hist_db[lo:n], self._hist_level[lo:n], self._ref))

    def _windows(self, final: bool) -> np.ndarray:
        """Windows of every frame whose mel frames are all computed (all remaining ones when ``final``)."""
        i0 = self.frames_out
        if final:
            i1 = int(round(self.samples_in / SAMPLE_RATE * self.fps))
        else:
            # frame i reads mel frames up to floor(i / fps / hop) + steps - 1 - steps // 2 + 1 (interpolation)
            last = self._n_mel - 1 - (MEL_STEPS - 1 - MEL_STEPS // 2) - 1
            i1 = int(math.floor((last + 1) * _HOP_S * self.fps - 1e-9)) + 1 if last >= 0 else 0
            i1 = max(i1, i0)
            while i1 > i0 and math.floor((i1 - 1) / self.fps / _HOP_S + 1e-9) > last:
                i1 -= 1
        if i1 <= i0:
            return np.zeros((0, MEL_STEPS, MEL_BINS), np.float32)
        t0 = self._series_start * _HOP_S - i0 / self.fps  # series time origin relative to frame i0
        out = window_series(self._series, _HOP_S, t0, self.fps, i1 - i0, MEL_STEPS, fill=0.0)
        self.frames_out = i1
        first = int(math.floor(i1 / self.fps / _HOP_S)) - MEL_STEPS // 2 - 1  # earliest mel index still needed
        drop = min(max(0, first - self._series_start), len(self._series))
        self._series = self._series[drop:]
        self._series_start += drop
        return out
