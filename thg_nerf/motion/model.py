"""The trained audio -> motion model of a run: training, saving, loading and prediction.

Trained on the person's training split against the tracked motion codes (``thg_nerf.preprocess.motion``),
with speaker augmentation (``thg_nerf.motion.augment``) and early stopping on the validation split. After
training, predictions are scaled about the mean motion so that the validation mouth opening has the
tracked amplitude (regression to the mean shrinks it; see ``MotionConfig.max_gain``), halfway between the
person's own validation audio and its speaker-augmented copies (``MotionConfig.gain_voices``).

New audio is voice-normalised first (``MotionConfig.voice_norm``, ``thg_nerf.audio.voice``): its filterbank is
warped towards the person's voice and its log-mel bands' spread matched to the person's
(``MotionConfig.voice_spread``); the voice model (fitted on the train split's speech) is saved with the network.

Several networks trained from consecutive seeds can be averaged (``MotionConfig.ensemble``): the seed alone
moves what one network fits by chance, and the mean keeps what they agree on.

Files in a run directory: ``motion_model.safetensors`` (weights of each network, normalisation and the
``voice.*`` model; JSON metadata with the schema version, the number of networks, config, feature spec, gain,
readout and validation metrics). Never pickled.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from thg_nerf.audio.voice import VoiceModel
from thg_nerf.config import to_dict
from thg_nerf.dataset import Dataset
from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger, progress
from thg_nerf.motion.augment import Perturbation, perturb
from thg_nerf.motion.config import AugmentConfig, MotionConfig
from thg_nerf.motion.net import AudioMotionNet, MotionEnsemble
from thg_nerf.preprocess.motion import MotionTargets, dataset_motion

log = get_logger(__name__)

MODEL_FILE = "motion_model.safetensors"
SCHEMA_VERSION = 2
#: Schemas :meth:`AudioMotionModel.load` reads: 1 = one network, 2 = ``members`` networks averaged.
READS_SCHEMAS = (1, 2)
SAMPLE_RATE = 16000
PREDICT_CHUNK = 4096
#: Shortest training sequence (frames).
MIN_SEQ = 8


def corr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two series (None when one is constant or shorter than 3)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def amplitude_ratio(pred: np.ndarray, ref: np.ndarray) -> float | None:
    """Standard deviation of ``pred`` over that of ``ref``."""
    s = float(np.std(ref))
    return float(np.std(pred)) / s if s > 1e-12 else None


@dataclass
class AudioMotionModel:
    """A trained audio -> motion model (see the module docstring)."""

    net: AudioMotionNet | MotionEnsemble
    spec: str
    fps: float
    feat_mean: torch.Tensor
    feat_std: torch.Tensor
    motion_mean: torch.Tensor
    motion_scale: float
    gain: float
    readout: np.ndarray
    """[M + 1] linear map from a motion code (plus 1) to the 2D mouth opening."""
    meta: dict
    voice: VoiceModel | None = None
    """The person's voice, for vocal tract length normalisation of new audio (None: no normalisation)."""

    @property
    def motion_dim(self) -> int:
        return int(self.motion_mean.numel())

    @property
    def feature_shape(self) -> tuple[int, int]:
        t, c = self.meta["feature_shape"]
        return int(t), int(c)

    @property
    def normalises_voice(self) -> bool:
        """Whether new audio is warped towards the person's voice (a voice model and mel features)."""
        return self.voice is not None and str(self.spec).startswith("mel")

    def voice_warp(self, wave: np.ndarray, sr: int) -> float:
        """The filterbank warp this model applies to a wave's features (1 without voice normalisation)."""
        from thg_nerf.audio.features import resample

        return self.voice.estimate_warp(resample(wave, sr, SAMPLE_RATE)) if self.normalises_voice else 1.0

    def features(self, wave: np.ndarray, sr: int, fps: float, n_frames: int,
                 warp: float | None = None) -> np.ndarray:
        """Feature windows [n_frames, T, C] of a wave, as this model reads them (voice-normalised).

        ``warp``: the filterbank warp when the caller already has it (:meth:`voice_warp` of this wave).
        """
        from thg_nerf.audio.features import extract_features, resample

        wave = resample(wave, sr, SAMPLE_RATE)  # once, for the warp estimate and the features
        if warp is None:
            warp = self.voice_warp(wave, SAMPLE_RATE)
        if abs(warp - 1.0) > 0.01:
            log.info(f"voice normalisation: filterbank warp {warp:.3f}")
        return extract_features(wave, SAMPLE_RATE, fps, n_frames, self.spec, warp=warp, spread=self.voice_spread)

    @property
    def voice_spread(self) -> np.ndarray | None:
        """The person's log-mel band spread [C] new voices are matched to (None: not matched)."""
        return self.voice.band_sd if self.normalises_voice else None

    @torch.no_grad()
    def predict(self, feats: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Motion codes [n, M] of consecutive frames' feature windows ``feats`` [n, T, C]."""
        feats = self._checked(feats)
        ctx = self.net.receptive_frames
        out = []
        for a in range(0, len(feats), PREDICT_CHUNK):
            lo = max(0, a - ctx)
            out.append(self.decode(self.encode(feats[lo:a + PREDICT_CHUNK]), calibrated)[a - lo:])
        return np.concatenate(out) if out else np.zeros((0, self.motion_dim), np.float32)

    @torch.no_grad()
    def encode(self, feats: np.ndarray) -> torch.Tensor:
        """Per-frame audio codes [n, E] of feature windows [n, T, C] (each frame on its own: a stream encodes
        each frame once and keeps the codes of the frames the temporal layers still need)."""
        self.net.eval()
        return self.net.encode(((torch.from_numpy(self._checked(feats)) - self.feat_mean) / self.feat_std)[None])[0]

    def _checked(self, feats: np.ndarray) -> np.ndarray:
        """``feats`` as float32 [n, T, C]; a one-line ThgError when its shape is not the model's."""
        feats = np.asarray(feats, np.float32)
        if feats.ndim != 3 or tuple(feats.shape[1:]) != self.feature_shape:
            raise ThgError(f"audio features have shape {list(feats.shape)}, the motion model needs "
                           f"[n, {self.feature_shape[0]}, {self.feature_shape[1]}] ({self.spec})")
        return feats

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, calibrated: bool = True) -> np.ndarray:
        """Motion codes [n, M] of consecutive frames' audio codes [n, E] (:meth:`encode`)."""
        self.net.eval()
        z = self.net.decode(codes[None])[0].numpy()
        gain = self.gain if calibrated else 1.0
        return (self.motion_mean.numpy() + gain * self.motion_scale * z).astype(np.float32)

    def mouth(self, motion: np.ndarray) -> np.ndarray:
        """2D mouth opening [n] a motion sequence [n, M] corresponds to (linear readout)."""
        return np.asarray(motion, np.float64) @ self.readout[:-1] + self.readout[-1]

    def save(self, run_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        from thg_nerf.utils.fs import atomic_file

        tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        tensors.update({"feat_mean": self.feat_mean, "feat_std": self.feat_std, "motion_mean": self.motion_mean})
        if self.voice is not None:
            tensors.update({f"voice.{k}": torch.from_numpy(v) for k, v in self.voice.tensors().items()})
        members = len(self.net.members) if isinstance(self.net, MotionEnsemble) else 1
        meta = {**self.meta, "schema_version": SCHEMA_VERSION, "members": members, "spec": self.spec, "fps": self.fps,
                "motion_scale": self.motion_scale, "gain": self.gain, "readout": [float(v) for v in self.readout]}
        path = Path(run_dir) / MODEL_FILE
        with atomic_file(path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"meta": json.dumps(meta)})
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> AudioMotionModel:
        """Load ``motion_model.safetensors`` of a run (one-line ThgError when missing or corrupt)."""
        from safetensors import safe_open

        path = Path(run_dir) / MODEL_FILE
        if not path.is_file():
            raise ThgError(f"{run_dir} has no audio -> motion model ({MODEL_FILE}); train the run again")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = json.loads((f.metadata() or {})["meta"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises several types for truncated/garbled files
            raise ThgError(f"corrupt motion model {path} ({type(e).__name__})") from None
        if meta.get("schema_version") not in READS_SCHEMAS:
            raise ThgError(f"{path} has motion-model schema {meta.get('schema_version')!r}, this thg-nerf reads "
                           f"{', '.join(map(str, READS_SCHEMAS))}: train the run again")
        t, c = meta["feature_shape"]
        nets = [_new_net(int(t), int(c), int(tensors["motion_mean"].numel()), meta["spec"], meta["config"])
                for _ in range(int(meta.get("members", 1)))]  # schema 1: one network
        net = nets[0] if len(nets) == 1 else MotionEnsemble(nets)
        try:
            net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        except RuntimeError as e:
            raise ThgError(f"corrupt motion model {path}: its weights do not fit its metadata "
                           f"({str(e).splitlines()[0][:120]})") from None
        voice = {k[6:]: v.numpy() for k, v in tensors.items() if k.startswith("voice.")}
        try:
            voice_model = VoiceModel.from_tensors(voice) if voice else None
        except (KeyError, ValueError) as e:
            raise ThgError(f"corrupt voice model in {path}: {e}") from None
        return cls(net=net.eval(), spec=meta["spec"], fps=float(meta["fps"]), feat_mean=tensors["feat_mean"],
                   feat_std=tensors["feat_std"], motion_mean=tensors["motion_mean"],
                   motion_scale=float(meta["motion_scale"]), gain=float(meta["gain"]),
                   readout=np.asarray(meta["readout"], np.float64), meta=meta, voice=voice_model)


@dataclass
class _Sequence:
    """One (possibly augmented) copy of the clip: features, targets and which frames may be trained on."""

    feats: np.ndarray   # [n, T, C]
    target: np.ndarray  # [n, M] normalised
    usable: np.ndarray  # [n] bool
    starts: np.ndarray  # valid start frames of a training sequence
    source: np.ndarray  # [n] position (frames, fractional) in the original clip of each frame


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a bool array."""
    best = cur = 0
    for v in mask:
        cur = cur + 1 if v else 0
        best = max(best, cur)
    return best


def _starts(usable: np.ndarray, length: int) -> np.ndarray:
    ok = np.concatenate([[0], np.cumsum(usable.astype(np.int64))])
    n = len(usable) - length + 1
    return np.nonzero(ok[length:length + max(0, n)] - ok[:max(0, n)] == length)[0] if n > 0 else np.zeros(0, int)


def _copies(wave: np.ndarray, fps: float, n_frames: int, spec: str, z: np.ndarray, train_mask: np.ndarray,
            cfg: AugmentConfig, seq_len: int, rng: np.random.Generator,
            voice: VoiceModel | None = None) -> list[_Sequence]:
    """The clean copy plus ``cfg.copies`` perturbed ones, targets re-timed to each (each perturbed copy's
    features voice-normalised when ``voice`` is given; mel specs only)."""
    from thg_nerf.audio.features import extract_features

    clean = extract_features(wave, SAMPLE_RATE, fps, n_frames, spec)
    src = np.arange(n_frames)
    out = [_Sequence(clean, z, train_mask, _starts(train_mask, seq_len), src.astype(np.float64))]
    for _ in progress(range(cfg.copies), desc="augmenting audio", unit="copy"):
        p = Perturbation.draw(cfg, rng)
        x, scale = perturb(wave, SAMPLE_RATE, p, rng)
        n = max(1, int(round(n_frames * scale)))
        orig = np.arange(n) / scale  # original frame position of each new frame
        target = np.stack([np.interp(orig, src, z[:, k]) for k in range(z.shape[1])], axis=1).astype(np.float32)
        usable = train_mask[np.clip(np.rint(orig).astype(int), 0, n_frames - 1)]
        warp = voice.estimate_warp(x) if voice is not None else 1.0
        feats = extract_features(x, SAMPLE_RATE, fps, n, spec, warp=warp,
                                 spread=voice.band_sd if voice is not None else None)
        out.append(_Sequence(feats, target, usable, _starts(usable, seq_len), orig))
    return out


def check_motion_config(cfg: MotionConfig) -> None:
    """One-line ThgError for a motion config that cannot train (no network, an unknown feature spec). Cheap:
    ``train`` and ``fit`` run it before they write or preprocess anything."""
    from thg_nerf.audio.features import feature_shape

    if cfg.ensemble < 1:
        raise ThgError(f"motion.ensemble must be at least 1, got {cfg.ensemble}")
    feature_shape(cfg.features)


def train_audio_motion(ds: Dataset, cfg: MotionConfig, run_dir: str | Path | None = None,
                       device: str | torch.device = "cpu") -> AudioMotionModel:
    """Train the audio -> motion model on a dataset's train split (early stopping on its val split):
    ``cfg.ensemble`` networks from consecutive seeds, whose predictions are averaged.

    Saves it into ``run_dir`` when given. Runs on the CPU in minutes (a GPU is not needed for a model this size).
    """
    from thg_nerf.audio.io import load_audio

    check_motion_config(cfg)
    t0 = time.perf_counter()
    targets: MotionTargets = dataset_motion(ds)
    n = ds.n_frames
    train_ids = np.array([r.img_id for r in ds.train], dtype=np.int64)
    val_ids = np.array([r.img_id for r in ds.val], dtype=np.int64)
    train_mask = np.zeros(n, bool)
    train_mask[train_ids] = True
    seq_len = min(cfg.seq_len, _longest_run(train_mask))  # short clips train on shorter sequences
    if seq_len < MIN_SEQ:
        raise ThgError(f"{ds.root}: the training split has no {MIN_SEQ} consecutive frames; the audio -> motion "
                       "model needs a longer clip")
    mu = targets.motion[train_ids].mean(0)
    scale = float(np.sqrt(np.sum(targets.motion[train_ids].var(0))) + 1e-8)
    z = ((targets.motion - mu) / scale).astype(np.float32)

    wave = load_audio(ds.path("audio"), SAMPLE_RATE)
    spec = cfg.features
    # the voice model (mel features only: the warp acts on the log-mel filterbank)
    wants_voice = (cfg.voice_norm or cfg.voice_norm_train) and str(spec).startswith("mel")
    voice = _fit_voice(wave, ds.fps, train_ids) if wants_voice else None
    if voice is not None and not cfg.voice_spread:
        voice.band_sd = None
    readout = _mouth_readout(targets.motion[train_ids], targets.mouth[train_ids])
    # the mouth opening's share of a normalised code error (per unit of the train split's mouth std)
    to_mouth = (scale * readout[:-1] / (targets.mouth[train_ids].std() + 1e-8)).astype(np.float32)
    nets, fits, first = [], [], None
    for k in range(cfg.ensemble):
        rng = np.random.default_rng(cfg.seed + k)
        torch.manual_seed(cfg.seed + k)
        seqs = _copies(wave, ds.fps, n, spec, z, train_mask, cfg.augment, seq_len, rng,
                       voice if cfg.voice_norm_train else None)
        seqs = [s for s in seqs if len(s.starts)]
        if first is None:  # the first network's copies set the feature normalisation and calibrate the gain
            first = seqs
            flat = np.concatenate([s.feats[s.usable] for s in seqs]).reshape(-1, seqs[0].feats.shape[-1])
            feat_mean = torch.from_numpy(flat.mean(0).astype(np.float32))
            feat_std = torch.from_numpy(flat.std(0).astype(np.float32) + 1e-3)
        label = f"audio->motion {k + 1}/{cfg.ensemble}" if cfg.ensemble > 1 else "audio->motion"
        net, fit = _fit_net(seqs, z[val_ids], val_ids, feat_mean, feat_std, to_mouth, targets.dim, spec, seq_len,
                            cfg, rng, torch.device(device), label)
        nets.append(net)
        fits.append(fit)
    t_steps, channels = first[0].feats.shape[1:]
    model = AudioMotionModel(net=nets[0] if len(nets) == 1 else MotionEnsemble(nets), spec=str(spec), fps=ds.fps,
                             feat_mean=feat_mean, feat_std=feat_std,
                             motion_mean=torch.from_numpy(mu.astype(np.float32)), motion_scale=scale, gain=1.0,
                             readout=readout, meta={"feature_shape": [int(t_steps), int(channels)]},
                             voice=voice if cfg.voice_norm else None)
    clean = first[0].feats
    pred = model.predict(clean, calibrated=False)
    metrics: dict = {"iterations": int(sum(f["iterations"] for f in fits)),
                     "best_val_loss": round(float(np.mean([f["best_val_loss"] for f in fits])), 5), "seconds": 0.0}
    if len(nets) > 1:
        metrics["members"] = [{"seed": cfg.seed + k, "iterations": f["iterations"],
                               "best_val_loss": f["best_val_loss"]} for k, f in enumerate(fits)]
    if len(val_ids) >= 3:
        m_pred, m_true = model.mouth(pred[val_ids]), targets.mouth[val_ids]
        amp = amplitude_ratio(m_pred, m_true)
        amp_voices = _voices_amplitude(model, first[1:], val_ids, targets.mouth) if cfg.gain_voices else None
        # halfway (geometric mean) between the person's own voice and the stand-ins for other voices
        ref = math.sqrt(amp * amp_voices) if amp and amp_voices else amp
        model.gain = float(np.clip(1.0 / ref, 1.0, cfg.max_gain)) if ref else 1.0
        m_cal = model.mouth(model.predict(clean)[val_ids])
        metrics.update({"val_mouth_corr": _round(corr(m_pred, m_true)), "val_mouth_amplitude_raw": _round(amp),
                        "val_mouth_amplitude_voices_raw": _round(amp_voices),
                        "val_mouth_amplitude": _round(amplitude_ratio(m_cal, m_true)),
                        "val_motion_corr_pc1": _round(corr(pred[val_ids, 0], targets.motion[val_ids, 0]))})
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    model.meta.update({"config": to_dict(cfg), "metrics": metrics, "history": [f["history"] for f in fits],
                       "lookahead_s": _lookahead_s(spec, t_steps)})
    log.info(f"audio->motion: {len(nets)} network(s), {metrics['iterations']} steps in {metrics['seconds']} s; "
             f"validation mouth corr {metrics.get('val_mouth_corr')}, amplitude "
             f"x{metrics.get('val_mouth_amplitude_raw')} (other-voice copies "
             f"x{metrics.get('val_mouth_amplitude_voices_raw')}) -> gain {model.gain:.2f}")
    if run_dir is not None:
        model.save(run_dir)
    return model


def _new_net(t_steps: int, channels: int, motion_dim: int, spec: str, cfg: dict | MotionConfig) -> AudioMotionNet:
    """An untrained network of the shape a config asks for (``cfg``: a MotionConfig or its saved dict)."""
    c = cfg if isinstance(cfg, dict) else to_dict(cfg)
    return AudioMotionNet(t_steps, channels, motion_dim, c["hidden"], c["context_frames"], c["dropout"],
                          _lifter(spec, c.get("lifter", 0)), _low_bands(spec, c.get("min_band_hz", 0.0)))


def _fit_net(seqs: list[_Sequence], val_z: np.ndarray, val_ids: np.ndarray, feat_mean: torch.Tensor,
             feat_std: torch.Tensor, to_mouth: np.ndarray, motion_dim: int, spec: str, seq_len: int,
             cfg: MotionConfig, rng: np.random.Generator, dev: torch.device, label: str
             ) -> tuple[AudioMotionNet, dict]:
    """Train one network on the copies ``seqs`` (the clean one first) against normalised codes, early-stopped on
    the clean copy's validation frames (``val_z`` [V, M] at ``val_ids``). Returns it (CPU, eval mode, the best
    validation state) and ``{iterations, best_val_loss, history}``."""
    clean = seqs[0].feats
    t_steps, channels = clean.shape[1:]
    net = _new_net(t_steps, channels, motion_dim, spec, cfg).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=1e-5)
    fm, fs = feat_mean.to(dev), feat_std.to(dev)
    all_clean = (torch.from_numpy(clean).to(dev) - fm) / fs
    val_t, val_idx = torch.from_numpy(val_z).to(dev), torch.from_numpy(val_ids).to(dev)
    to_mouth_t = torch.from_numpy(to_mouth).to(dev)

    def val_loss() -> float:
        net.eval()
        with torch.no_grad():
            pred = net(all_clean[None])[0][val_idx]
        net.train()
        return float(torch.mean((pred - val_t) ** 2)) if len(val_ids) else 0.0

    best, best_state, bad, it = math.inf, None, 0, 0
    history = []
    weights = np.array([2.0] + [1.0] * (len(seqs) - 1))  # the clean copy is drawn twice as often
    weights /= weights.sum()
    bar = progress(total=cfg.iters, desc=label, unit="it")
    for it in range(1, cfg.iters + 1):
        lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * it / cfg.iters)))
        for g in opt.param_groups:
            g["lr"] = lr
        picks = rng.choice(len(seqs), size=cfg.batch, p=weights)
        xb, yb = [], []
        for k in picks:
            s = seqs[k]
            a = int(rng.choice(s.starts))
            xb.append(s.feats[a:a + seq_len])
            yb.append(s.target[a:a + seq_len])
        x = (torch.from_numpy(np.stack(xb)).to(dev) - fm) / fs
        y = torch.from_numpy(np.stack(yb)).to(dev)
        pred = net(x)
        loss = torch.mean((pred - y) ** 2)
        if cfg.velocity_weight > 0:
            loss = loss + cfg.velocity_weight * torch.mean(((pred[:, 1:] - pred[:, :-1]) - (y[:, 1:] - y[:, :-1])) ** 2)
        if cfg.mouth_weight > 0:
            loss = loss + cfg.mouth_weight * torch.mean(((pred - y) @ to_mouth_t) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
        if it % cfg.eval_every == 0 or it == cfg.iters:
            v = val_loss() if len(val_ids) else float(loss.item())
            history.append([it, round(float(loss.item()), 5), round(v, 5)])
            bar.set_postfix(loss=f"{loss.item():.4f}", val=f"{v:.4f}")
            if v < best - 1e-5:
                best, bad = v, 0
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.cpu().eval(), {"iterations": it, "best_val_loss": round(best, 5), "history": history}


def frames_audio(wave: np.ndarray, fps: float, frame_ids: np.ndarray) -> np.ndarray:
    """The samples of a 16 kHz wave [n] under the given video frames, concatenated in time order."""
    keep = np.zeros(len(wave), bool)
    for i in frame_ids:
        keep[int(i / fps * SAMPLE_RATE):int((i + 1) / fps * SAMPLE_RATE)] = True
    return wave[keep]


def _fit_voice(wave: np.ndarray, fps: float, train_ids: np.ndarray) -> VoiceModel | None:
    """The person's voice model, fitted on the audio of the train split's frames (None: too little speech)."""
    voice = VoiceModel.fit(frames_audio(wave, fps, train_ids))
    if voice is None:
        log.warning("too little speech in the train split for a voice model: new voices are not normalised")
    return voice


def _voices_amplitude(model: AudioMotionModel, seqs: list[_Sequence], val_ids: np.ndarray,
                      mouth: np.ndarray) -> float | None:
    """Uncalibrated amplitude ratio of the predicted validation mouth opening over speaker-augmented copies
    ``seqs`` of the clip (stand-ins for other voices), pooled as a geometric mean; None without copies.

    ``mouth`` [N]: the tracked mouth opening of the original clip, re-timed to each copy.
    """
    val = np.zeros(len(mouth), bool)
    val[val_ids] = True
    logs = []
    for s in seqs:
        sel = val[np.clip(np.rint(s.source).astype(int), 0, len(mouth) - 1)]
        if sel.sum() < 3:
            continue
        pred = model.mouth(model.predict(s.feats, calibrated=False))[sel]
        amp = amplitude_ratio(pred, np.interp(s.source, np.arange(len(mouth)), mouth)[sel])
        if amp:
            logs.append(math.log(amp))
    return float(math.exp(np.mean(logs))) if logs else None


def _mouth_readout(motion: np.ndarray, mouth: np.ndarray, ridge: float = 0.01) -> np.ndarray:
    """[M + 1] linear map from motion codes [N, M] (plus 1) to the mouth opening [N].

    Ridge-regularised by ``ridge`` x the mean component variance, so components with next to no variance
    in the clip (noise) get no weight: predicted codes are never exact there, and a least-squares weight
    of 1 / (their tiny scale) would turn that error into a large mouth error.
    """
    mu, y0 = motion.mean(0), float(mouth.mean())
    x = (motion - mu).astype(np.float64)
    g = x.T @ x
    w = np.linalg.solve(g + ridge * np.trace(g) / len(g) * np.eye(len(g)), x.T @ (mouth - y0))
    return np.r_[w, y0 - mu @ w]


def _lifter(spec: str, keep: int) -> tuple[int, int]:
    """``(bands, keep)`` for AudioMotionNet: the log-mel bands lead mel specs; other specs have none."""
    from thg_nerf.audio.features import MEL_BINS

    return (MEL_BINS, keep) if keep and str(spec).startswith("mel") else (0, 0)


def _low_bands(spec: str, min_hz: float) -> int:
    """How many log-mel bands (of mel specs) have their centre below ``min_hz``."""
    from thg_nerf.audio.features import mel_edges

    if min_hz <= 0 or not str(spec).startswith("mel"):
        return 0
    return int(np.sum(mel_edges()[1:-1] < min_hz))


def _round(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def _lookahead_s(spec: str, steps: int) -> float:
    """Future audio an output frame depends on: half the feature window (20 ms steps)."""
    from thg_nerf.audio.features import MEL_HOP

    return round((steps - 1 - steps // 2) * MEL_HOP / SAMPLE_RATE, 3)
