"""Model pieces: CPU hash encoding vs the ops reference, rays, occupancy, training vs inference rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thg_nerf.dataset import Intrinsics
from thg_nerf.errors import ThgError
from thg_nerf.fields.audio import window_indices
from thg_nerf.fields.config import ModelConfig
from thg_nerf.fields.encoding import HashGrid, make_layout
from thg_nerf.fields.model import POSE_CLAMP, TalkingHeadModel
from thg_nerf.ops.hash_encoding import hash_encode_torch
from thg_nerf.render.config import RenderConfig
from thg_nerf.render.occupancy import OccupancyGrid
from thg_nerf.render.rays import image_pixels, pixel_rays
from thg_nerf.render.volume import HeadConditions, render_head_inference, render_head_train, render_image


@pytest.mark.parametrize("dim,log2,levels", [(2, 12, 6), (2, 8, 4), (3, 12, 5), (3, 16, 3)])
def test_cpu_hash_encoding_matches_ops_reference(dim, log2, levels):
    torch.manual_seed(0)
    grid = HashGrid(make_layout(dim, levels, 2, log2, 4, 96), init_scale=1.0)
    assert 0 < grid._n_dense <= levels or log2 == 8  # the cases cover dense and hashed levels
    x = (torch.rand(3000, dim) * 1.2 - 0.1).requires_grad_(True)  # includes points outside [0, 1] (clamped)
    ours = grid(x)
    ref = hash_encode_torch(x, grid.embeddings, grid.offsets, grid.resolutions)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)  # the same sums, in another order
    w = torch.randn_like(ours)
    g_emb, g_x = torch.autograd.grad((ours * w).sum(), [grid.embeddings, x])
    r_emb, r_x = torch.autograd.grad((ref * w).sum(), [grid.embeddings, x])
    torch.testing.assert_close(g_emb, r_emb, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_x, r_x, rtol=1e-4, atol=1e-3)


def test_pixel_rays_follow_data_format():
    intr = Intrinsics(focal=100.0, cx=32.0, cy=24.0, w=64, h=48)
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([0.0, 0.0, 5.0])
    # the pixel whose centre is the principal point looks straight down -z
    o, d = pixel_rays(c2w, torch.tensor([31.5]), torch.tensor([23.5]), intr)
    torch.testing.assert_close(d, torch.tensor([[0.0, 0.0, -1.0]]))
    torch.testing.assert_close(o, torch.tensor([[0.0, 0.0, 5.0]]))
    # image right is +x, image down is -y (OpenGL camera)
    _, d = pixel_rays(c2w, torch.tensor([63, 0]), torch.tensor([23.5, 0]), intr)
    assert d[0, 0] > 0 and abs(float(d[0, 1])) < 1e-6 and d[1, 1] > 0
    u, v = image_pixels(64, 48)
    assert u.shape == (64 * 48,) and int(u[1]) == 1 and int(v[64]) == 1


def test_occupancy_grid_keeps_dense_cells_and_culls_empty_ones():
    grid = OccupancyGrid(16, 1.0)

    def ball(pts: torch.Tensor) -> torch.Tensor:
        return torch.where(pts.norm(dim=-1) < 0.5, 50.0, 0.0)

    for _ in range(3):
        grid.update(ball, step_size=0.05, generator=torch.Generator().manual_seed(0))
    centre = grid.occ[7:9, 7:9, 7:9]
    assert bool(centre.all())
    assert not bool(grid.occ[0, 0, 0]) and 0.01 < grid.occupied_fraction < 0.2


def _small_model(condition: str = "audio", **over) -> TalkingHeadModel:
    cfg = ModelConfig(num_levels=4, log2_hashmap_size=10, max_resolution=64, hidden_dim=16, audio_dim=8,
                      audio_att_window=4, occupancy_resolution=16, march_steps=48, torso_levels=4,
                      condition=condition, **over)
    torch.manual_seed(0)
    return TalkingHeadModel(cfg, bound=1.0, audio_shape=(16, 32), n_train=5, motion_dim=6)


def test_training_and_inference_rendering_agree():
    model = _small_model()
    with torch.no_grad():  # make a visible object: a dense ball of a constant-ish colour
        model.head.sigma_net[-1].bias[0] = 3.0
    intr = Intrinsics(40.0, 16.0, 16.0, 32, 32)
    c2w = torch.eye(4)
    c2w[2, 3] = 3.0
    u, v = image_pixels(32, 32)
    o, d = pixel_rays(c2w, u, v, intr)
    cond = HeadConditions(torch.randn(1, 8), torch.zeros(1, 1), torch.zeros(1, 4))
    frame = torch.zeros(o.shape[0], dtype=torch.long)
    with torch.no_grad():
        tr = render_head_train(model.head, model.occupancy, o, d, frame, cond, model.step_size, 512, None, 1e-3)
        inf = render_head_inference(model.head, model.occupancy, o, d, cond, model.step_size, 8, 512, 1e-3)
    assert float(tr["acc"].max()) > 0.9
    torch.testing.assert_close(tr["rgb"], inf["rgb"], atol=2e-3, rtol=0)
    torch.testing.assert_close(tr["acc"], inf["acc"], atol=2e-3, rtol=0)


def test_model_conditions_and_render_image_shapes():
    model = _small_model()
    feats = np.random.default_rng(0).standard_normal((20, 16, 32)).astype(np.float16)
    poses = np.tile(np.eye(4, dtype=np.float32), (5, 1, 1))
    poses[:, 2, 3] = 3.0 + 0.01 * np.arange(5)
    model.set_normalization(feats, poses)
    codes = model.cond_codes(feats, torch.tensor([0, 7, 19]))
    assert codes.shape == (3, 8) and torch.isfinite(codes).all()
    assert window_indices(torch.tensor([0, 19]), 4, 20).tolist() == [[0, 0, 0, 1], [17, 18, 19, 19]]
    far = torch.eye(4)[None].clone()
    far[0, 0, 3] = 100.0
    assert float(model.pose_codes(far).abs().max()) <= POSE_CLAMP
    model.eval()
    out = render_image(model, poses[0], Intrinsics(40.0, 12.0, 8.0, 24, 16), feats, 3, 0.5, RenderConfig(),
                       torch.device("cpu"))
    assert out["fg"].shape == (16, 24, 3) and out["alpha"].shape == (16, 24)
    assert float(out["alpha"].min()) >= 0 and float(out["alpha"].max()) <= 1


def test_motion_conditioned_model_normalises_and_depends_on_motion_only():
    model = _small_model("motion")
    assert model.cond_shape == (6,) and not hasattr(model, "audio_encoder")
    rng = np.random.default_rng(0)
    motion = (3.0 + 2.0 * rng.standard_normal((30, 6))).astype(np.float32)
    poses = np.tile(np.eye(4, dtype=np.float32), (5, 1, 1))
    model.set_normalization(motion, poses)
    torch.testing.assert_close(model.motion_mean, torch.from_numpy(motion.mean(0)))
    codes = model.cond_codes(motion, torch.tensor([0, 7, 29]))
    assert codes.shape == (3, 8)
    torch.testing.assert_close(codes[1:2], model.cond_codes(torch.from_numpy(motion), torch.tensor([7])))
    other = motion.copy()
    other[7] += 1.0
    assert not torch.allclose(model.cond_codes(other, torch.tensor([7])), codes[1:2])
    with pytest.raises(ThgError, match="motion"):
        TalkingHeadModel(model.cfg, bound=1.0, audio_shape=(16, 32), n_train=5, motion_dim=0)
    with pytest.raises(ThgError, match="condition"):
        _small_model("pixels")
