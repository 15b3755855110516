"""The PyTorch reference ops against independent brute-force oracles, and backend selection (CPU only)."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from thg_nerf.errors import MissingDependencyError, ThgError
from thg_nerf.ops import (
    HashGridLayout,
    accumulate,
    backend,
    composite,
    hash_encode,
    march_rays,
    update_occupancy,
)
from thg_nerf.ops import _build as build
from thg_nerf.ops import tcnn as tcnn_mod
from thg_nerf.ops.cases import LAYOUTS, ambiguous_rays, hash_points, hash_table, layout_id, march_scene, packed_samples
from thg_nerf.ops.composite import composite_step_torch, composite_torch
from thg_nerf.ops.hash_encoding import _vertex_index, hash_encode_torch
from thg_nerf.ops.occupancy import update_occupancy_torch
from thg_nerf.ops.raymarch import march_rays_torch, march_step_torch, ray_aabb_intersect

REPO = Path(__file__).resolve().parents[1]
HASH_PRIMES = (1, 2654435761, 805459861)  # as documented in hash_encoding.py


# ----------------------------------------------------------------------------------------------- hash encoding


def oracle_hash_encode(x: torch.Tensor, table: torch.Tensor, layout: HashGridLayout) -> torch.Tensor:
    """Per point and level: explicit multilinear interpolation with hand-computed table rows (float64)."""
    offs, ress = layout.offsets, layout.resolutions
    tab = table.double().tolist()
    out = []
    for point in x.double().tolist():
        feats: list[float] = []
        for lvl, res in enumerate(ress):
            size, side = offs[lvl + 1] - offs[lvl], res + 1
            pos = [min(max(v, 0.0), 1.0) * res for v in point]
            base = [min(max(math.floor(q), 0), res - 1) for q in pos]
            frac = [q - b for q, b in zip(pos, base)]
            acc = [0.0] * layout.level_dim
            for corner in itertools.product((0, 1), repeat=layout.dim):
                v = [b + c for b, c in zip(base, corner)]
                if side**layout.dim <= size:
                    row = sum(vi * side**d for d, vi in enumerate(v))  # x fastest
                else:
                    h = 0
                    for d, vi in enumerate(v):
                        h ^= (vi * HASH_PRIMES[d]) % 2**32
                    row = h % size
                w = math.prod(f if c else 1.0 - f for f, c in zip(frac, corner))
                acc = [a + w * e for a, e in zip(acc, tab[offs[lvl] + row])]
            feats += acc
        out.append(feats)
    return torch.tensor(out, dtype=torch.float64)


def test_layout_offsets_and_vertex_index():
    layout = HashGridLayout(dim=3, num_levels=3, level_dim=2, log2_hashmap_size=9, base_resolution=3,
                            max_resolution=12)
    assert layout.resolutions == [3, 6, 12]
    # 4^3 = 64 rows dense; 7^3 = 343 dense (<= 512), rounded up to 344; 13^3 > 512 -> 512 hashed rows
    assert layout.offsets == [0, 64, 64 + 344, 64 + 344 + 512]
    assert layout.n_params == 920 and layout.out_dim == 6
    v = torch.tensor([[1, 2, 3]])
    assert _vertex_index(v, 3, 64).item() == 1 + 2 * 4 + 3 * 16
    h = (3 * 1) ^ ((5 * 2654435761) % 2**32) ^ ((7 * 805459861) % 2**32)
    assert _vertex_index(torch.tensor([[3, 5, 7]]), 12, 512).item() == h % 512


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
def test_hash_encode_torch_matches_oracle(layout):
    gen = torch.Generator().manual_seed(10)
    x = hash_points(layout, 40, gen, torch.float64)
    table = hash_table(layout, gen, torch.float64)
    offsets, res = layout.tensors(torch.device("cpu"))
    ref = hash_encode_torch(x, table, offsets, res)
    assert ref.shape == (40, layout.out_dim)
    assert torch.allclose(ref, oracle_hash_encode(x, table, layout), rtol=0, atol=1e-12)
    # float32 inputs and table: same values to float32 rounding; the public op on CPU is the reference
    out32 = hash_encode(x.float(), table.float(), offsets, res)
    assert out32.dtype == torch.float32
    assert torch.allclose(out32.double(), ref, rtol=0, atol=1e-5)


def test_hash_encode_gradcheck_fp64():
    layout = HashGridLayout(dim=3, num_levels=2, level_dim=2, log2_hashmap_size=5, base_resolution=2,
                            max_resolution=5)
    gen = torch.Generator().manual_seed(11)
    x = (0.05 + 0.9 * torch.rand(6, 3, generator=gen, dtype=torch.float64)).requires_grad_(True)
    table = hash_table(layout, gen, torch.float64).requires_grad_(True)
    offsets, res = layout.tensors(torch.device("cpu"))
    assert torch.autograd.gradcheck(lambda a, b: hash_encode_torch(a, b, offsets, res), (x, table))
    layout2 = LAYOUTS[1]
    x2 = (0.05 + 0.9 * torch.rand(5, 2, generator=gen, dtype=torch.float64)).requires_grad_(True)
    table2 = hash_table(layout2, gen, torch.float64).requires_grad_(True)
    off2, res2 = layout2.tensors(torch.device("cpu"))
    assert torch.autograd.gradcheck(lambda a, b: hash_encode_torch(a, b, off2, res2), (x2, table2))


# ----------------------------------------------------------------------------------------------- ray marching


def _occupied_np(p: np.ndarray, occ: np.ndarray, lo: np.ndarray, ext: np.ndarray) -> bool:
    rel = (p - lo) / ext
    if not bool(((rel >= 0) & (rel < 1)).all()):
        return False
    g = np.array(occ.shape, dtype=np.float32)
    idx = np.minimum((rel * g).astype(np.int64), np.array(occ.shape) - 1)
    return bool(occ[idx[0], idx[1], idx[2]])


def oracle_march(scene, max_samples: int, jitter: torch.Tensor | None):
    """Per-ray loop over every lattice point, in numpy float32 scalars (the documented formula)."""
    f = np.float32
    o, d = scene.rays_o.numpy(), scene.rays_d.numpy()
    tn, tf = scene.t_near.numpy(), scene.t_far.numpy()
    u = np.zeros(len(tn), np.float32) if jitter is None else jitter.numpy()
    occ, lo = scene.occ.numpy(), scene.aabb[:3].numpy()
    ext = (scene.aabb[3:] - scene.aabb[:3]).numpy()
    step, half = f(scene.step), f(0.5 * scene.step)
    ri, t0s, t1s = [], [], []
    for r in range(len(tn)):
        kept, k = 0, 0
        while kept < max_samples:
            t0 = tn[r] + (f(k) + u[r]) * step
            if not t0 < tf[r]:
                break
            if _occupied_np(o[r] + d[r] * (t0 + half), occ, lo, ext):
                ri.append(r)
                t0s.append(t0)
                t1s.append(min(t0 + step, tf[r]))
                kept += 1
            k += 1
    return torch.tensor(ri, dtype=torch.long), torch.tensor(t0s), torch.tensor(t1s)


@pytest.mark.parametrize("use_jitter", [True, False])
def test_march_rays_torch_matches_oracle(use_jitter):
    gen = torch.Generator().manual_seed(12)
    scene = march_scene(gen, n_rays=64, n_steps_across=60)
    jitter = scene.jitter if use_jitter else None
    for cap in (1000, 5):
        ref = march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb,
                               scene.step, cap, jitter)
        ri, t0, t1 = oracle_march(scene, cap, jitter)
        assert ri.numel() > 50
        assert torch.equal(ref.ray_indices, ri) and torch.equal(ref.t_starts, t0) and torch.equal(ref.t_ends, t1)
    # the public op on CPU is the reference (and needs no gradients)
    pub = march_rays(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb, scene.step, 1000,
                     jitter)
    assert torch.equal(pub.t_starts, march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far,
                                                      scene.occ, scene.aabb, scene.step, 1000, jitter).t_starts)


def test_march_rays_empty_and_missing_rays():
    gen = torch.Generator().manual_seed(13)
    scene = march_scene(gen, n_rays=16)
    none = march_rays_torch(scene.rays_o[:0], scene.rays_d[:0], scene.t_near[:0], scene.t_far[:0], scene.occ,
                            scene.aabb, scene.step, 10)
    assert none.ray_indices.numel() == 0 and none.ray_indices.dtype == torch.long
    empty = march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, torch.zeros_like(scene.occ),
                             scene.aabb, scene.step, 10)
    assert empty.t_starts.numel() == 0
    t_near, t_far = ray_aabb_intersect(torch.tensor([[5.0, 5.0, 5.0]]), torch.tensor([[1.0, 0.0, 0.0]]), scene.aabb)
    assert t_near.item() == t_far.item()


def oracle_march_step(scene, t: torch.Tensor, n_steps: int):
    f = np.float32
    o, d, tf = scene.rays_o.numpy(), scene.rays_d.numpy(), scene.t_far.numpy()
    occ, lo = scene.occ.numpy(), scene.aabb[:3].numpy()
    ext = (scene.aabb[3:] - scene.aabb[:3]).numpy()
    step, half, scan = f(scene.step), f(0.5 * scene.step), 64 * n_steps
    out = np.full((len(tf), n_steps), np.inf, np.float32)
    t_next = np.zeros(len(tf), np.float32)
    for r, tr in enumerate(t.numpy()):
        n = 0
        for k in range(scan):
            t0 = tr + f(k) * step
            if not t0 < tf[r]:
                break
            if _occupied_np(o[r] + d[r] * (t0 + half), occ, lo, ext):
                out[r, n] = t0
                n += 1
                if n == n_steps:
                    break
        last = out[r, -1] + step if n == n_steps else tr + f(scan * scene.step)
        t_next[r] = min(last, max(tf[r], tr))
    return torch.from_numpy(out), torch.from_numpy(t_next)


def test_march_step_torch_matches_oracle():
    gen = torch.Generator().manual_seed(14)
    scene = march_scene(gen, n_rays=48, n_steps_across=50)
    t = scene.t_near.clone()
    for _ in range(4):
        ref, ref_next = march_step_torch(scene.rays_o, scene.rays_d, t, scene.t_far, scene.occ, scene.aabb,
                                         scene.step, 3)
        out, t_next = oracle_march_step(scene, t, 3)
        assert torch.equal(ref, out) and torch.equal(ref_next, t_next)
        t = ref_next
    assert bool((t >= scene.t_far).any())


# ----------------------------------------------------------------------------------------------- compositing


def oracle_composite(p, early_stop: float) -> torch.Tensor:
    """Per-ray loop in float64: w_i = T_i (1 - exp(-tau_i)) while T_i >= early_stop, else 0."""
    sig, t0, t1, ri = p.sigmas.double().tolist(), p.t_starts.double().tolist(), p.t_ends.double().tolist(), \
        p.ray_indices.tolist()
    w, depth, prev = [], 0.0, -1
    for s, a, b, r in zip(sig, t0, t1, ri):
        if r != prev:
            depth, prev = 0.0, r
        trans = math.exp(-depth)
        tau = s * (b - a)
        w.append(trans * (1 - math.exp(-tau)) if trans >= early_stop else 0.0)
        depth += tau
    return torch.tensor(w, dtype=torch.float64)


@pytest.mark.parametrize("early_stop", [1e-4, 0.0])
def test_composite_torch_matches_oracle(early_stop):
    gen = torch.Generator().manual_seed(15)
    p = packed_samples(gen, dtype=torch.float64)
    ref = composite_torch(p.sigmas, p.t_starts, p.t_ends, p.ray_indices, p.n_rays, early_stop)
    assert torch.allclose(ref, oracle_composite(p, early_stop), rtol=0, atol=1e-12)
    if early_stop > 0:
        assert bool((ref == 0).any())
    acc = accumulate(ref, None, p.ray_indices, p.n_rays)[:, 0]
    assert acc.shape == (p.n_rays,) and bool((acc <= 1 + 1e-12).all()) and acc[0] == 0
    p32 = packed_samples(torch.Generator().manual_seed(15), dtype=torch.float32)
    keep = ~ambiguous_rays(p32, early_stop)[p32.ray_indices] if early_stop > 0 else slice(None)
    out32 = composite(p32.sigmas, p32.t_starts, p32.t_ends, p32.ray_indices, p32.n_rays, early_stop)
    assert torch.allclose(out32[keep].double(), ref[keep], rtol=0, atol=1e-5)


def test_composite_gradcheck_fp64():
    gen = torch.Generator().manual_seed(16)
    p = packed_samples(gen, n_rays=6, max_per_ray=8, dtype=torch.float64, scale=20.0)
    assert not bool(ambiguous_rays(p, 1e-2, rel=0.05).any())
    sig = p.sigmas.clone().requires_grad_(True)
    for early_stop in (0.0, 1e-2):
        assert torch.autograd.gradcheck(
            lambda s, es=early_stop: composite_torch(s, p.t_starts, p.t_ends, p.ray_indices, p.n_rays, es), (sig,))


def test_composite_step_matches_training_composite_on_same_samples():
    """Inference (march_step + composite_step in blocks) == training (march_rays + composite) on one scene."""
    gen = torch.Generator().manual_seed(17)
    scene = march_scene(gen, n_rays=120, res=(16, 16, 16), n_steps_across=80)
    lo, hi = scene.aabb[:3], scene.aabb[3:]
    center, radius = (lo + hi) / 2, 0.35 * float((hi - lo).min())

    def field(pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = (pts - center).norm(dim=-1)
        return torch.where(dist < radius, 15.0 * (1 - dist / radius), torch.zeros_like(dist)), torch.sigmoid(3 * pts)

    # occupied: every cell within 2 cells of the density's support, so boundary rounding never drops density
    g = torch.tensor(scene.occ.shape)
    axes = [lo[a] + (torch.arange(int(g[a])) + 0.5) / g[a] * (hi[a] - lo[a]) for a in range(3)]
    cells = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    occ = (cells - center).norm(dim=-1) < radius + 2 * float(((hi - lo) / g).max())
    early_stop = 1e-3
    s = march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, occ, scene.aabb, scene.step, 10**6)
    mid = (s.t_starts + s.t_ends) / 2
    pts = scene.rays_o[s.ray_indices] + scene.rays_d[s.ray_indices] * mid[:, None]
    sigma, rgb = field(pts)
    n = scene.rays_o.shape[0]
    w = composite_torch(sigma, s.t_starts, s.t_ends, s.ray_indices, n, early_stop)
    want_rgb = accumulate(w, rgb, s.ray_indices, n)
    want_depth = accumulate(w, mid[:, None], s.ray_indices, n)[:, 0]
    assert bool((w > 0).sum() > 100) and bool((w == 0).any())

    t = scene.t_near.clone()
    trans, rgb_acc, depth_acc = torch.ones(n), torch.zeros(n, 3), torch.zeros(n)
    for _ in range(500):
        starts, t = march_step_torch(scene.rays_o, scene.rays_d, t, scene.t_far, occ, scene.aabb, scene.step, 4)
        valid = torch.isfinite(starts)
        safe = torch.where(valid, starts, torch.zeros_like(starts))
        p = scene.rays_o[:, None] + scene.rays_d[:, None] * (safe + 0.5 * scene.step)[..., None]
        sig, col = field(p)
        composite_step_torch(sig, col, starts, scene.step, trans, rgb_acc, depth_acc, early_stop)
        if bool((t >= scene.t_far).all()):
            break
    assert bool((t >= scene.t_far).all())
    assert torch.allclose(rgb_acc, want_rgb, rtol=0, atol=1e-4)
    assert torch.allclose(depth_acc, want_depth, rtol=0, atol=1e-4 * float(scene.t_far.max()))


def test_composite_step_torch_semantics():
    sig = torch.tensor([[10.0, 0.0, 5.0]])
    rgb = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    ts = torch.tensor([[1.0, 1.1, math.inf]])
    trans, rgb_acc, depth_acc = torch.tensor([0.5]), torch.zeros(1, 3), torch.zeros(1)
    composite_step_torch(sig, rgb, ts, 0.1, trans, rgb_acc, depth_acc, 1e-3)
    w0 = 0.5 * (1 - math.exp(-1.0))
    assert rgb_acc.tolist()[0] == pytest.approx([w0, 0.0, 0.0], abs=1e-7)  # inf slot contributes nothing
    assert depth_acc.item() == pytest.approx(w0 * 1.05, abs=1e-6)
    assert trans.item() == pytest.approx(0.5 * math.exp(-1.0), rel=1e-6)
    composite_step_torch(sig, rgb, ts, 0.1, torch.tensor([1e-4]), rgb_acc, depth_acc, 1e-3)  # below early stop
    assert rgb_acc.tolist()[0] == pytest.approx([w0, 0.0, 0.0], abs=1e-7)


# ----------------------------------------------------------------------------------------------- occupancy


def test_update_occupancy_semantics():
    density = torch.tensor([0.5, 0.1, 0.0, 0.2, 0.4])
    new = torch.tensor([-1.0, 0.3, 0.0, 0.05, -0.5])
    same = density
    occ = update_occupancy_torch(density, new, decay=0.5, threshold=0.15)
    assert same is density  # in place
    assert density.tolist() == pytest.approx([0.25, 0.3, 0.0, 0.1, 0.2])
    assert occ.tolist() == [True, True, False, False, True] and occ.dtype == torch.bool
    grid = torch.full((2, 2, 2), 0.02)
    occ = update_occupancy(grid, torch.full((2, 2, 2), -1.0), decay=0.5, threshold=0.01)
    assert occ.shape == (2, 2, 2) and not bool(occ.any()) and grid[0, 0, 0].item() == pytest.approx(0.01)


# ----------------------------------------------------------------------------------------------- backend


def test_backend_env_override(monkeypatch):
    for value, want in (("torch", "torch"), (" CUDA ", "cuda"), ("auto", None), ("", None)):
        monkeypatch.setenv("THG_NERF_BACKEND", value)
        assert backend.env_override() == want
    monkeypatch.setenv("THG_NERF_BACKEND", "tpu")
    with pytest.raises(ThgError, match="THG_NERF_BACKEND"):
        backend.env_override()
    x = torch.zeros(3)
    monkeypatch.setenv("THG_NERF_BACKEND", "cuda")
    with pytest.raises(ThgError, match="CPU"):
        backend.use_cuda(x)
    monkeypatch.setenv("THG_NERF_BACKEND", "torch")
    assert not backend.use_cuda(x)
    assert backend.default_backend_name(torch.device("cpu")) == "torch"
    monkeypatch.delenv("THG_NERF_BACKEND")
    assert not backend.use_cuda(x) and not backend.use_cuda()
    assert backend.default_backend_name(torch.device("cpu")) == "torch"


def test_import_never_compiles():
    code = ("import sys, torch, thg_nerf, thg_nerf.ops\n"
            "from thg_nerf.ops import backend, hash_encode, HashGridLayout\n"
            "backend.cuda_extension_built()\n"
            "lay = HashGridLayout(3, 2, 2, 8, 2, 8)\n"
            "off, res = lay.tensors(torch.device('cpu'))\n"
            "hash_encode(torch.rand(4, 3), torch.zeros(lay.n_params, 2), off, res)\n"
            "assert 'torch.utils.cpp_extension' not in sys.modules, 'cpp_extension imported'\n"
            "assert 'thg_nerf.ops._build' not in sys.modules, '_build imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_build_sources_cover_cuda_ext():
    listed = set(build.SOURCES)
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "cuda_ext").glob("*.cu")}
    assert on_disk and on_disk <= listed and "cuda_ext/bindings.cpp" in listed
    assert all((REPO / s).is_file() for s in listed)
    assert not any("fast_math" in f for f in build.NVCC_FLAGS)


def test_tcnn_optional(monkeypatch):
    monkeypatch.delenv("THG_NERF_ENCODING", raising=False)
    assert tcnn_mod.encoding_backend() == "thg"
    monkeypatch.setenv("THG_NERF_ENCODING", "TCNN")
    assert tcnn_mod.encoding_backend() == "tcnn"
    assert tcnn_mod.encoding_backend("thg") == "thg"
    monkeypatch.setenv("THG_NERF_ENCODING", "other")
    with pytest.raises(ThgError, match="THG_NERF_ENCODING"):
        tcnn_mod.encoding_backend()
    if tcnn_mod.tcnn_available():
        pytest.skip("tinycudann is installed here; the missing-dependency path is not testable")
    with pytest.raises(MissingDependencyError, match="tinycudann") as info:
        tcnn_mod.tcnn_hash_encoder(LAYOUTS[0])
    assert "\n" not in str(info.value)


def test_bench_kernels_cpu_smoke():
    res = subprocess.run([sys.executable, "benchmarks/bench_kernels.py", "--cpu-smoke"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "| op |" in res.stdout and "hash" in res.stdout
