"""Audio -> motion model settings."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AugmentConfig:
    """Speaker augmentation of the training audio, so other voices land in the training distribution.

    Each copy of the training audio gets a random draw of every perturbation below; features are recomputed
    from the perturbed wave and the motion targets are re-timed to match it.
    """

    copies: int = 8
    """Augmented copies of the training audio (0 = augmentation off)."""
    warp: tuple[float, float] = (0.82, 1.2)
    """Frequency warp factor range: pitch and formants (vocal-tract length) scaled, duration kept."""
    tempo: tuple[float, float] = (0.85, 1.15)
    """Speaking-rate factor range (> 1 = faster), pitch kept."""
    gain_db: tuple[float, float] = (-12.0, 6.0)
    """Gain range in dB."""
    noise_prob: float = 0.5
    """Probability of added noise (white or pink) per copy."""
    noise_snr_db: tuple[float, float] = (10.0, 30.0)
    """Signal-to-noise ratio range of the added noise."""
    reverb_prob: float = 0.5
    """Probability of reverberation (a synthetic exponentially decaying room response) per copy."""
    rt60_s: tuple[float, float] = (0.1, 0.6)
    """Reverberation time range in seconds."""


@dataclass
class MotionConfig:
    """The audio -> motion model: a temporal network from audio feature windows to the motion code."""

    features: str = "mel"
    """Audio features it reads (``mel``, ``phones``, ``mel+phones``, see ``thg_nerf.audio.features``)."""
    hidden: int = 64
    """Channels of the per-frame audio encoder and of the temporal layers."""
    context_frames: int = 12
    """Past video frames the temporal layers see (causal: no future frames beyond the audio window)."""
    dropout: float = 0.15
    """Dropout between temporal layers."""
    lifter: int = 12
    """Keep this many cepstral coefficients of the log-mel bands (smooths away the pitch harmonics, keeps the
    formant envelope; 0 = off). Only for features that start with mel."""
    min_band_hz: float = 0.0
    """Log-mel bands whose centre lies below this frequency (the voice's pitch, room rumble) are ignored (held
    at their mean; 0 = none). Only for features that start with mel. At 200-250 Hz it cost 0.09 of validation
    correlation for no cross-speaker gain beyond seed noise (docs/BENCHMARKS.md, Lip sync, A/B)."""
    seq_len: int = 40
    """Frames per training sequence."""
    batch: int = 8
    """Sequences per step."""
    iters: int = 1500
    """Maximum optimisation steps (early stopping usually ends sooner)."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to 5 %)."""
    eval_every: int = 50
    """Validation loss every N steps (early stopping keeps the best)."""
    patience: int = 10
    """Stop after this many validations without improvement."""
    velocity_weight: float = 0.5
    """Weight of the frame-to-frame difference loss (crisp transitions)."""
    mouth_weight: float = 1.0
    """Weight of an extra loss on the mouth opening read out of the predicted code (in units of the train
    split's mouth opening std; 0 = off): lips are judged by the mouth opening, and with it another speaker's
    predicted mouth follows their real one better (speaker2 0.29 -> 0.38 over three seeds;
    docs/BENCHMARKS.md, Lip sync, A/B)."""
    max_gain: float = 2.0
    """Cap on the amplitude calibration: predictions are scaled about the mean so the validation mouth
    opening has the tracked amplitude (regression shrinks it), by at most this factor (1 = off)."""
    gain_voices: bool = True
    """Calibrate the amplitude gain halfway (geometric mean) between the person's own validation audio and its
    speaker-augmented copies (stand-ins for other voices, whose predicted mouth moves less), instead of on
    the own audio alone; off = the own audio alone."""
    voice_norm: bool = True
    """Vocal tract length normalisation of new audio: a model of the person's own voice (fitted on the train
    split) is saved with the network, and every other voice's log-mel filterbank is warped by the factor that
    brings it closest to it before prediction (``thg_nerf.audio.voice``; mel features only; the person's own
    voice comes out at about 1)."""
    voice_spread: bool = True
    """With ``voice_norm``: also stretch each log-mel band of a new voice about its reference so that its spread
    over speech matches the person's (``thg_nerf.audio.voice``; the person's own voice is left almost
    unchanged)."""
    voice_norm_train: bool = False
    """Also normalise each speaker-augmented training copy towards the person's voice (speaker-adaptive
    training: the copies then differ from the clean audio by everything but vocal tract length)."""
    ensemble: int = 6
    """Networks trained from seeds ``seed .. seed + ensemble - 1`` (each with its own augmented copies and
    sequence draws) whose predictions are averaged. One network's validation correlation moves by +-0.07 with
    the seed alone; on two sets of six seeds the ensemble beat the mean of its members trained alone on the
    person's validation audio (+0.02 and +0.015) and on another man's voice (+0.035 and +0.047), for six times
    the training (about 4 minutes on 2 cores) (docs/BENCHMARKS.md, Lip sync, A/B)."""
    seed: int = 0
    """Random seed (initialisation, sequence draws, augmentation) of the first network."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Speaker augmentation."""
