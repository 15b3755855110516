"""Figures of ``thg-nerf dub`` on a run trained on the shared macron clip.

    .venv/bin/python benchmarks/bench_dub.py --run data/macron_motion/run \\
        --media ../shared/media --work /tmp/thg_bench_dub --out dub.json [--parts identity,val,radio]

Parts (``--parts``, default all):

- ``identity``: the face-shape difference (``thg_nerf.render.dub.identity_distance`` of ``face_signature``)
  between the run's person and (a) other tracks of the same person: the clip's halves, a reframed and
  downscaled copy, 5-second pieces and the validation segment, each tracked on its own, (b) other people:
  katiehill and speaker2. The refusal threshold (``DubConfig.identity_threshold``) must sit between. The
  tracked 3D identity shapes are compared too (``tracked_3d_shape_distance``), to show why they are not used.
- ``val``: dub the run's own validation segment of the training clip with its own audio (the run's
  dataset is reused), written as ``dub_to_file`` writes (``open_output``, CRF ``DUB_CRF``, the run's
  provenance mark) and decoded back. PSNR against the original frames over the full frame, and outside the
  blended region (weight 0), also for the same encode without the mark. The full render of every
  ``--full-every``-th frame (``render_image`` over the background plate at the tracking size, resampled to
  the source size like the dub). Seconds per frame, measured frame by frame interleaved (the machine is
  shared, so the load is the same for both): the dub step (region, render, resample, match, blend; with the
  matching ring on one frame in ``match_every``) against the full render at the same (tracking) size. Mouth
  opening (mediapipe landmarks) of the dubbed frames against the real frames'.
- ``crf``: the first 30 validation frames, unchanged, through the same writer at CRF 18/14/12/10/8/6: the floor
  under the untouched pixels (mark + second encode), which sets ``DUB_CRF``.
- ``cast``: the same segment with a colour cast and more contrast (ffmpeg ``CAST``), tracked as a recording of
  its own and dubbed with its own audio, every 4th frame blended with and without matching.
- ``radio``: the same segment cut into its own video (so it is tracked like any other recording) dubbed with
  ``drive_radio_16k.wav`` (8 s: longer, so the video ping-pongs) through the CLI: duration against the
  audio's, output size against the source's, mouth-opening amplitude of the dubbed frames against the real
  footage's, and its correlation with the motion model's predicted mouth opening for that audio.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SR = 16000


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) of uint8 images [H, W, 3] over the pixels of ``mask`` [H, W] (all when None)."""
    d = (a.astype(np.float64) - b.astype(np.float64)) / 255.0
    if mask is not None:
        d = d[mask]
    mse = float(np.mean(d**2)) if d.size else 0.0
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def seam_figures(image: np.ndarray, original: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """How visible the pasted region is, from uint8 crops [h, w, 3] and the blend weight [h, w]:
    (colour step: mean over channels of |mean colour of the output - of the footage| in grey levels, over the
    inner feather (weight 0.5-0.99), where the render meets the footage; sharpness ratio: high-pass (luma minus
    a 1.2 px Gaussian blur) standard deviation of the output over the footage's, where the weight is 1)."""
    from scipy.ndimage import gaussian_filter

    band, core = (weight >= 0.5) & (weight < 0.99), weight >= 0.99
    a, b = image.astype(np.float64), original.astype(np.float64)
    step = float(np.abs(a[band].mean(0) - b[band].mean(0)).mean())
    lum = np.array([0.299, 0.587, 0.114])
    hp_a, hp_b = a @ lum - gaussian_filter(a @ lum, 1.2), b @ lum - gaussian_filter(b @ lum, 1.2)
    return step, float(hp_a[core].std() / max(hp_b[core].std(), 1e-9))


def match_figures(run, original, plan, kept: dict, cfg) -> dict:
    """Colour and sharpness matching on / off: each frame of ``kept`` (plan index -> source frame) rendered
    once (with the ring) and blended both ways; PSNR over the blended region and :func:`seam_figures`."""
    import dataclasses

    import torch

    from thg_nerf.preprocess.pipeline import c2w_from_pose
    from thg_nerf.render import dub as D

    trk = original.dataset.tracking()
    topo = D._topology(original.dataset)
    cond = torch.from_numpy(plan.cond)
    off = dataclasses.replace(cfg, match=False)
    match = D._Match()
    figs: dict[bool, list] = {True: [], False: []}
    for i, frame in sorted(kept.items()):
        j = int(plan.schedule[i])
        c2w = c2w_from_pose(trk["rotation"][j].astype(np.float64), trk["translation"][j].astype(np.float64))
        geo = D._region(original, trk["landmarks"][j], plan.region, topo, cfg, with_ring=True)
        with torch.inference_mode():
            rendered = D._render_pixels(run, original.intrinsics, c2w, cond, i, float(trk["eye"][j]), geo.pixels)
        x0, y0, x1, y1 = geo.box
        for matched, state, c in ((True, match, cfg), (False, D._Match(), off)):
            img, weight = D._blend(frame, rendered, geo, original, state, c)
            a, b = img[y0:y1, x0:x1], frame[y0:y1, x0:x1]
            figs[matched].append((masked_psnr(a, b, weight > 0), *seam_figures(a, b, weight)))
    out = {}
    for matched, name in ((True, "matched"), (False, "unmatched")):
        f = np.asarray(figs[matched])
        out.update({f"psnr_blended_region_{name}": round(float(f[:, 0].mean()), 2),
                    f"seam_colour_step_{name}": round(float(f[:, 1].mean()), 2),
                    f"sharpness_ratio_{name}": round(float(f[:, 2].mean()), 3)})
    return out


def cut(src: Path, dst: Path, start: float | None = None, end: float | None = None, vf: str | None = None) -> Path:
    """Re-encode a part of a video (near-lossless H.264, audio kept)."""
    from thg_nerf.utils.video import ffmpeg_exe

    if dst.is_file():
        return dst
    cmd = [ffmpeg_exe(), "-v", "error", "-y"]
    if start:
        cmd += ["-ss", f"{start:.4f}"]
    cmd += ["-i", str(src)]
    if end is not None:
        cmd += ["-t", f"{end - (start or 0.0):.4f}"]
    if vf:
        cmd += ["-vf", vf]
    cmd += ["-c:v", "libx264", "-crf", "10", "-preset", "fast", "-c:a", "aac", str(dst)]
    subprocess.run(cmd, check=True)
    return dst


def mouth_series(frames, det) -> np.ndarray:
    """Mouth opening (mediapipe landmarks) of each frame; NaN where no face is found."""
    from thg_nerf.train.metrics import mouth_opening_landmarks

    out = []
    for f in frames:
        lm = det(f)
        out.append(np.nan if lm is None else mouth_opening_landmarks(lm))
    return np.asarray(out)


def nan_corr(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return None
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def part_identity(run_dir: Path, media: Path, work: Path) -> dict:
    from thg_nerf.dataset import load_dataset
    from thg_nerf.preprocess.config import PreprocessConfig
    from thg_nerf.preprocess.pipeline import preprocess
    from thg_nerf.render.dub import _topology, face_signature, identity_distance, identity_landmarks
    from thg_nerf.train.checkpoint import read_run_info

    info = read_run_info(run_dir)
    ref_ds = load_dataset(info["data_dir"])
    ref_trk = ref_ds.tracking()
    ref = ref_trk["shape"]
    index = identity_landmarks(_topology(ref_ds), ref)
    ref_sig = face_signature(ref_trk["landmarks"], ref_trk["valid"], index)
    macron = media / "macron_50s_512px_30fps.mp4"
    clips = {
        "same: macron 0-25 s": ("same", cut(macron, work / "macron_a.mp4", 0.0, 25.0)),
        "same: macron 25-50 s": ("same", cut(macron, work / "macron_b.mp4", 25.0, 50.4)),
        "same: macron 10-30 s reframed 400 px, 360p": (
            "same", cut(macron, work / "macron_reframed.mp4", 10.0, 30.0, "crop=400:400:70:30,scale=360:360")),
    }
    for t in (0, 12, 24, 36):
        clips[f"same: macron {t}-{t + 5} s"] = ("same", cut(macron, work / f"macron_5s_{t}.mp4", t, t + 5.0))
    clips["same: macron 45.8-50.4 s (val)"] = ("same", cut(macron, work / "macron_val.mp4", 1375 / 30, 50.4))
    clips["other: katiehill"] = ("other", media / "katiehill_8s_512px_25fps.mp4")
    clips["other: speaker2"] = ("other", media / "speaker2_20s_1080x1920_25fps.mp4")
    cfg = PreprocessConfig(size=int(info["intrinsics"]["w"]))
    rows = []
    for name, (kind, clip) in clips.items():
        t0 = time.perf_counter()
        trk = load_dataset(preprocess(clip, work / f"track_{clip.stem}", cfg)).tracking()
        sig = face_signature(trk["landmarks"], trk["valid"], index)
        rows.append({"clip": name, "kind": kind, "distance": round(identity_distance(sig, ref_sig), 4),
                     "tracked_3d_shape_distance": round(_distance_3d(trk["shape"], ref), 4),
                     "track_s": round(time.perf_counter() - t0, 1)})
        print(rows[-1], flush=True)
    same = [r["distance"] for r in rows if r["kind"] == "same"]
    other = [r["distance"] for r in rows if r["kind"] == "other"]
    return {"rows": rows, "same_max": max(same), "other_min": min(other)}


def _distance_3d(shape: np.ndarray, ref: np.ndarray) -> float:
    """The tracked 3D identity shapes compared instead (all landmarks): RMS after 3D similarity alignment,
    relative to the reference's RMS radius."""
    a, b = shape - shape.mean(0), ref - ref.mean(0)
    u, s, vt = np.linalg.svd(b.T @ a)
    d = np.array([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    res = b - (s * d).sum() / (a**2).sum() * a @ ((u * d) @ vt).T
    return float(np.sqrt((res**2).sum(1).mean() / (b**2).sum(1).mean()))


def part_val(run_dir: Path, work: Path, full_every: int, region: str, max_frames: int | None = None) -> dict:
    import torch

    from thg_nerf.audio.io import load_audio
    from thg_nerf.preprocess.pipeline import c2w_from_pose
    from thg_nerf.provenance import watermarker_for_run
    from thg_nerf.render import dub as D
    from thg_nerf.render.config import DubConfig
    from thg_nerf.render.output import open_output
    from thg_nerf.render.volume import frame_uint8, render_image
    from thg_nerf.train.checkpoint import load_run, read_run_info
    from thg_nerf.train.metrics import LipLandmarker
    from thg_nerf.utils.video import VideoWriter, iter_frames

    run = load_run(run_dir, device="cpu")
    src_path = Path(read_run_info(run_dir)["data_meta"]["source"]["path"])
    cfg = DubConfig(region=region)
    original = D.load_original(run, src_path, cfg=cfg)
    assert original.reused, "the training clip should reuse the run's dataset"
    ds = original.dataset
    val = sorted(r.img_id for r in ds.val)
    start, end = val[0], val[-1] + 1
    end = min(end, start + max_frames) if max_frames else end
    wave = load_audio(ds.path("audio"), SR, start=start / ds.fps, end=end / ds.fps)
    plan = D.plan_dub(run, original, wave, SR, cfg, start=start, end=end)
    out = work / f"val_{region}.mp4"
    unmarked = work / f"val_{region}_unmarked.mp4"
    weights: list[np.ndarray] = []
    n_render_px = []
    marker = watermarker_for_run(run_dir / "run.json", "dub")
    # as dub_to_file writes (CRF, provenance mark), plus the same encode without the mark, to separate the two
    t0 = time.perf_counter()
    with open_output(out, plan.size, plan.fps, crf=D.DUB_CRF, marker=marker) as writer, \
            VideoWriter(unmarked, plan.size, plan.fps, crf=D.DUB_CRF) as plain:
        for f in D.dub_frames(run, original, plan, cfg):
            w, h = plan.size
            full_w = np.zeros((h, w), np.float32)
            if f.box is not None and f.weight is not None:
                x0, y0, x1, y1 = f.box
                full_w[y0:y1, x0:x1] = f.weight
            weights.append(full_w)
            n_render_px.append(f.render_pixels)
            writer.write(f.image)
            plain.write(f.image)
    dub_seconds = time.perf_counter() - t0
    # decode the written dub and the originals; PSNRs at the source size
    det = LipLandmarker()
    sub = set(range(0, plan.n_frames, full_every))
    kept: dict[int, np.ndarray] = {}
    src_frames = iter_frames(src_path, fps=ds.fps)
    dubbed = iter_frames(out)
    dubbed_plain = iter_frames(unmarked)
    p_full, p_out, p_out_plain, real_mouth, dub_mouth = [], [], [], [], []
    for k, orig in enumerate(src_frames):
        if k < start:
            continue
        if k >= end:
            break
        i = k - start
        d = next(dubbed)
        outside = weights[i] <= 0
        p_full.append(masked_psnr(d, orig))
        p_out.append(masked_psnr(d, orig, outside))
        p_out_plain.append(masked_psnr(next(dubbed_plain), orig, outside))
        if i in sub:
            kept[i] = orig
        real_mouth.append(mouth_series([orig], det)[0])
        dub_mouth.append(mouth_series([d], det)[0])
    src_frames.close()
    dubbed.close()
    dubbed_plain.close()
    det.close()
    real_mouth, dub_mouth = np.asarray(real_mouth), np.asarray(dub_mouth)
    # speed and the full render, frame by frame interleaved (the machine is shared: alternating keeps the
    # load the same for both): the dub step (region, render, resample, match, blend) without and with the
    # matching ring, and the full render at the same (tracking) size, composited over the plate
    from PIL import Image

    trk = ds.tracking()
    cond = torch.from_numpy(plan.cond)
    topo = D._topology(ds)
    bg = torch.from_numpy(np.array(run.background)).float() / 255.0
    t_plain, t_ring, t_render_plain, t_render_ring, t_full, full_psnr, dub_psnr_sub = [], [], [], [], [], [], []
    match = D._Match()
    for i in sorted(sub):
        j = int(plan.schedule[i])
        c2w = c2w_from_pose(trk["rotation"][j].astype(np.float64), trk["translation"][j].astype(np.float64))
        eye = float(trk["eye"][j])
        for with_ring, t_step, t_render in ((False, t_plain, t_render_plain), (True, t_ring, t_render_ring)):
            t0 = time.perf_counter()
            geo = D._region(original, trk["landmarks"][j], plan.region, topo, cfg, with_ring=with_ring)
            t1 = time.perf_counter()
            with torch.inference_mode():
                rendered = D._render_pixels(run, original.intrinsics, c2w, cond, i, eye, geo.pixels)
            t_render.append(time.perf_counter() - t1)
            D._blend(kept[i], rendered, geo, original, match, cfg)
            t_step.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.inference_mode():
            r = render_image(run.model, c2w.astype(np.float32), original.intrinsics, cond, i, eye, run.cfg.render,
                             run.device)
        img = frame_uint8(r["fg"], r["alpha"], bg)
        t_full.append(time.perf_counter() - t0)
        up = np.asarray(Image.fromarray(img).resize(plan.size, Image.Resampling.BILINEAR))
        full_psnr.append(masked_psnr(up, kept[i]))
        dub_psnr_sub.append(p_full[i])
    every = cfg.match_every
    t_step = (np.asarray(t_plain) * (every - 1) + np.asarray(t_ring)) / every  # the product's cadence
    region_frac = float(np.mean(n_render_px)) / (ds.size[0] * ds.size[1])
    return {
        "region": region, "frames": plan.n_frames, "segment": [start, end], "size": list(plan.size),
        "tracking_size": list(ds.size), "crf": D.DUB_CRF,
        "psnr_full_frame_dub": round(float(np.mean(p_full)), 2),
        "psnr_outside_region_dub": round(float(np.mean(p_out)), 2),
        "psnr_outside_region_dub_min": round(float(np.min(p_out)), 2),
        "psnr_outside_region_dub_without_mark": round(float(np.mean(p_out_plain)), 2),
        "psnr_full_frame_dub_on_full_render_frames": round(float(np.mean(dub_psnr_sub)), 2),
        "psnr_full_frame_full_render": round(float(np.mean(full_psnr)), 2),
        "full_render_frames": len(sub),
        **match_figures(run, original, plan, kept, cfg),
        "rendered_fraction_of_tracking_frame": round(region_frac, 4),
        "blended_fraction_of_source_frame": round(float(np.mean([(w > 0).mean() for w in weights])), 4),
        "s_per_frame_region_render": round(float(np.median(t_render_plain)), 3),
        "s_per_frame_region_render_with_ring": round(float(np.median(t_render_ring)), 3),
        "s_per_frame_dub_step": round(float(np.median(t_step)), 3),
        "s_per_frame_full_render": round(float(np.median(t_full)), 3),
        "speedup_dub_step": round(float(np.median(np.asarray(t_full) / t_step)), 2),
        "speedup_region_render_with_ring": round(float(np.median(np.asarray(t_full) / np.asarray(t_render_ring))), 2),
        "s_per_frame_whole_dub_incl_decode_encode": round(dub_seconds / plan.n_frames, 3),
        "mouth_std_real": round(float(np.nanstd(real_mouth)), 4),
        "mouth_std_dub": round(float(np.nanstd(dub_mouth)), 4),
        "mouth_amplitude_ratio": round(float(np.nanstd(dub_mouth) / np.nanstd(real_mouth)), 3),
        "mouth_corr_dub_vs_real": nan_corr(dub_mouth, real_mouth),
    }


def part_crf(run_dir: Path, media: Path, work: Path, n: int = 30) -> dict:
    """The floor under the untouched pixels: the first ``n`` validation frames, unchanged, written as
    ``dub_to_file`` writes (provenance mark, H.264 at several CRFs) and decoded: PSNR against the input, and
    the mark alone (no encode)."""
    from thg_nerf.provenance import watermarker_for_run
    from thg_nerf.render.output import open_output
    from thg_nerf.utils.video import iter_frames

    frames = []
    for k, f in enumerate(iter_frames(media / "macron_50s_512px_30fps.mp4", fps=30.0)):
        if k >= 1375:
            frames.append(f)
        if len(frames) == n:
            break
    size = (frames[0].shape[1], frames[0].shape[0])
    marker = watermarker_for_run(run_dir / "run.json", "dub")
    res = {"mark_only": round(float(np.mean([masked_psnr(marker.mark(f), f) for f in frames])), 2)}
    for crf in (18, 14, 12, 10, 8, 6):
        out = work / f"crf_{crf}.mp4"
        with open_output(out, size, 30.0, crf=crf, marker=watermarker_for_run(run_dir / "run.json", "dub")) as w:
            for f in frames:
                w.write(f)
        psnr = [masked_psnr(d, f) for d, f in zip(iter_frames(out), frames)]
        res[f"crf_{crf}"] = round(float(np.mean(psnr)), 2)
        res[f"crf_{crf}_min"] = round(float(np.min(psnr)), 2)
        res[f"crf_{crf}_kbytes_per_s"] = round(out.stat().st_size / 1024 / (n / 30.0), 1)
    return res


CAST = "colorbalance=rs=0.12:gs=0.02:bs=-0.10,eq=brightness=0.04:contrast=1.1"


def part_cast(run_dir: Path, media: Path, work: Path, region: str, every: int = 4) -> dict:
    """The validation segment with a colour cast and more contrast (another camera or light, as far as colour
    goes), tracked like any recording and dubbed with its own audio: matching on / off."""
    from thg_nerf.audio.io import load_audio
    from thg_nerf.render import dub as D
    from thg_nerf.render.config import DubConfig
    from thg_nerf.train.checkpoint import load_run
    from thg_nerf.utils.video import iter_frames

    clip = cut(media / "macron_50s_512px_30fps.mp4", work / "macron_val_cast.mp4", 1375 / 30, 50.4, CAST)
    run = load_run(run_dir, device="cpu")
    cfg = DubConfig(region=region)
    original = D.load_original(run, clip, cache_dir=work / "cache", cfg=cfg)
    plan = D.plan_dub(run, original, load_audio(clip, SR), SR, cfg)
    kept = {i: f for i, f in enumerate(iter_frames(clip, fps=original.fps)) if i % every == 0 and i < plan.n_frames}
    return {"filter": CAST, "frames": len(kept), "identity_distance": original.identity_distance,
            **match_figures(run, original, plan, kept, cfg)}


def part_radio(run_dir: Path, media: Path, work: Path, region: str) -> dict:
    from thg_nerf.audio.io import load_audio
    from thg_nerf.cli.main import main
    from thg_nerf.dataset import load_dataset
    from thg_nerf.train.checkpoint import load_run, read_run_info
    from thg_nerf.train.metrics import LipLandmarker
    from thg_nerf.utils.video import iter_frames, probe_video

    info = read_run_info(run_dir)
    ds = load_dataset(info["data_dir"])
    val = sorted(r.img_id for r in ds.val)
    start, end = val[0] / ds.fps, (val[-1] + 1) / ds.fps
    clip = cut(Path(info["data_meta"]["source"]["path"]), work / "macron_val.mp4", start, end)
    drive = media / "drive_radio_16k.wav"
    out = work / f"radio_{region}.mp4"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    rc = main(["-q", "dub", str(run_dir), "--video", str(clip), "--audio", str(drive), "-o", str(out),
               "--region", region, "--cache", str(work / "cache"), "--device", "cpu"])
    seconds = time.perf_counter() - t0
    assert rc == 0, rc
    got, src = probe_video(out), probe_video(clip)
    audio_s = load_audio(drive, SR).size / SR
    det = LipLandmarker()
    dub_mouth = mouth_series(iter_frames(out), det)
    real_mouth = mouth_series(iter_frames(clip), det)
    det.close()
    run = load_run(run_dir, device="cpu")
    predicted = None
    if run.motion_model is not None:
        wave = load_audio(drive, SR)
        mm = run.motion_model
        predicted = mm.mouth(mm.predict(mm.features(wave, SR, got.fps, len(dub_mouth))))
    return {
        "region": region, "seconds_total": round(seconds, 1), "frames": got.n_frames,
        "duration_out": round(got.duration, 3), "duration_audio": round(audio_s, 3),
        "duration_error_frames": round(abs(got.duration - audio_s) * got.fps, 2),
        "size_out": [got.width, got.height], "size_source": [src.width, src.height],
        "mouth_std_real": round(float(np.nanstd(real_mouth)), 4),
        "mouth_std_dub": round(float(np.nanstd(dub_mouth)), 4),
        "mouth_amplitude_ratio": round(float(np.nanstd(dub_mouth) / np.nanstd(real_mouth)), 3),
        "mouth_corr_dub_vs_predicted": None if predicted is None else nan_corr(dub_mouth, predicted),
        "faces_missed": int(np.isnan(dub_mouth).sum()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    p.add_argument("--work", type=Path, default=Path("/tmp/thg_bench_dub"))
    p.add_argument("--parts", default="identity,val,crf,cast,radio")
    p.add_argument("--region", default="mouth")
    p.add_argument("--full-every", type=int, default=4, help="full-render every n-th val frame (it is slow)")
    p.add_argument("--val-frames", type=int, help="only the first n val frames (a quick check)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    from thg_nerf.log import setup_logging

    setup_logging(quiet=True)
    args.work.mkdir(parents=True, exist_ok=True)
    res: dict = {}
    parts = args.parts.split(",")
    if "identity" in parts:
        res["identity"] = part_identity(args.run, args.media, args.work)
    if "val" in parts:
        res["val"] = part_val(args.run, args.work, args.full_every, args.region, args.val_frames)
        print(json.dumps(res["val"], indent=1), flush=True)
    if "crf" in parts:
        res["crf"] = part_crf(args.run, args.media, args.work)
        print(json.dumps(res["crf"], indent=1), flush=True)
    if "cast" in parts:
        res["cast"] = part_cast(args.run, args.media, args.work, args.region)
        print(json.dumps(res["cast"], indent=1), flush=True)
    if "radio" in parts:
        res["radio"] = part_radio(args.run, args.media, args.work, args.region)
        print(json.dumps(res["radio"], indent=1), flush=True)
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
