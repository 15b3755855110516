"""The CUDA kernels' per-thread logic, compiled for the CPU, against the PyTorch references (no GPU needed).

``cuda_ext/host/harness.cpp`` runs the same ``__host__ __device__`` bodies as the kernels sequentially; this
verifies indexing, hashing, the DDA skipping (bit-exact packed samples), the hand-written compositing backward
and the inference ops. Not covered here: launch configuration, atomics under contention, fp16 tables, the torch
binding (see tests/test_cuda_ops.py, which needs a GPU).
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_ops_cases import (
    LAYOUTS,
    ambiguous_rays,
    hash_points,
    hash_table,
    inference_blocks,
    layout_id,
    march_scene,
    packed_samples,
    reference_n_steps,
    rel_err,
)

from thg_nerf.ops.composite import composite_step_torch, composite_torch
from thg_nerf.ops.hash_encoding import hash_encode_torch
from thg_nerf.ops.occupancy import update_occupancy_torch
from thg_nerf.ops.raymarch import march_rays_torch, march_step_torch

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "cuda_ext" / "host" / "harness.cpp"
F32, F64 = 0, 2


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    """The harness compiled with g++ (skips without a C++ compiler)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build the kernel host harness")
    out = tmp_path_factory.mktemp("harness") / "harness.so"
    subprocess.run([cxx, "-O2", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC", f"-I{REPO / 'cuda_ext'}",
                    str(HARNESS), "-o", str(out)], check=True)
    return ctypes.CDLL(str(out))


def ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    if t is None:
        return ctypes.c_void_p(None)
    assert t.is_contiguous()
    return ctypes.c_void_p(t.data_ptr())


I64, I32, F, D = ctypes.c_int64, ctypes.c_int32, ctypes.c_float, ctypes.c_double


# ----------------------------------------------------------------------------------------------- hash encoding


def host_hash(lib, x, table, layout, grad_out=None, input_grad=False):
    """Forward (grad_out None) or backward (grad_table, grad_x summed over levels) through the harness."""
    offsets, res = layout.tensors(torch.device("cpu"))
    dtype = F64 if table.dtype == torch.float64 else F32
    n, levels, feat = x.shape[0], layout.num_levels, layout.level_dim
    args = (I64(n), I32(layout.dim), I32(levels), I32(feat), I32(dtype))
    if grad_out is None:
        out = torch.full((n, levels * feat), math.nan, dtype=table.dtype)
        assert lib.thg_hash_forward(ptr(x), ptr(table), ptr(offsets), ptr(res), ptr(out), *args) == 0
        return out
    grad_table = torch.zeros_like(table)
    grad_x = torch.full((n, levels, layout.dim), math.nan, dtype=x.dtype) if input_grad else None
    assert lib.thg_hash_backward(ptr(grad_out), ptr(x), ptr(table), ptr(offsets), ptr(res), ptr(grad_table),
                                 ptr(grad_x), *args) == 0
    return grad_table, (grad_x.sum(1) if input_grad else None)


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_hash_encoding_matches_reference(lib, layout, dtype):
    gen = torch.Generator().manual_seed(1)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    x = hash_points(layout, 300, gen, dtype)
    table = hash_table(layout, gen, dtype)
    offsets, res = layout.tensors(torch.device("cpu"))
    xr, tr = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    ref = hash_encode_torch(xr, tr, offsets, res)
    out = host_hash(lib, x, table, layout)
    assert rel_err(out, ref) < tol
    grad_out = torch.randn(ref.shape, generator=gen, dtype=torch.float64).to(dtype)
    ref.backward(grad_out)
    grad_table, grad_x = host_hash(lib, x, table, layout, grad_out, input_grad=True)
    assert rel_err(grad_table, tr.grad) < tol
    assert rel_err(grad_x, xr.grad) < (1e-4 if dtype == torch.float32 else 1e-10)
    outside = ((x < 0) | (x > 1))
    assert outside.any() and bool((grad_x[outside] == 0).all())


# ----------------------------------------------------------------------------------------------- ray marching


def grid_args(occ8: torch.Tensor, scene) -> tuple:
    """ctypes arguments of the occupancy grid (``occ8``: the grid as uint8, kept alive by the caller)."""
    return (ptr(occ8), *(I32(g) for g in scene.occ.shape), ptr(scene.aabb))


def host_march_train(lib, scene, max_samples, jitter):
    n = scene.rays_o.shape[0]
    n_steps = reference_n_steps(scene.t_near, scene.t_far, scene.step)
    occ8 = scene.occ.to(torch.uint8).contiguous()
    grid = grid_args(occ8, scene)
    counts = torch.full((n,), -7, dtype=torch.long)

    def run(fill, offsets, ri, ts, te):
        lib.thg_march_train(I32(fill), ptr(scene.rays_o), ptr(scene.rays_d), ptr(scene.t_near), ptr(scene.t_far),
                            ptr(jitter), *grid, F(scene.step), I64(n_steps), I32(max_samples), I64(n),
                            ptr(counts), ptr(offsets), ptr(ri), ptr(ts), ptr(te))

    run(0, None, None, None, None)
    offsets = torch.cumsum(counts, 0) - counts
    total = int(counts.sum())
    ri = torch.full((total,), -7, dtype=torch.long)
    ts, te = torch.full((total,), math.nan), torch.full((total,), math.nan)
    run(1, offsets, ri, ts, te)
    return ri, ts, te


@pytest.mark.parametrize("kind", ["blobs", "noise"])
@pytest.mark.parametrize("cap", [1024, 7])
def test_march_rays_identical_samples(lib, kind, cap):
    gen = torch.Generator().manual_seed(2)
    for across in (40, 173):
        scene = march_scene(gen, n_rays=400, kind=kind, n_steps_across=across)
        for jitter in (scene.jitter, None):
            ref = march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb,
                                   scene.step, cap, jitter)
            ri, ts, te = host_march_train(lib, scene, cap, jitter)
            assert ref.ray_indices.numel() > 100
            assert torch.equal(ri, ref.ray_indices)
            assert torch.equal(ts, ref.t_starts)
            assert torch.equal(te, ref.t_ends)


def test_march_skipping_fine_steps_in_coarse_cells(lib):
    """Many samples per empty cell: the DDA jumps must land on the same lattice as the reference."""
    gen = torch.Generator().manual_seed(3)
    scene = march_scene(gen, n_rays=200, res=(5, 4, 6), n_steps_across=900)
    ref = march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb,
                           scene.step, 4096, scene.jitter)
    ri, ts, _ = host_march_train(lib, scene, 4096, scene.jitter)
    assert torch.equal(ri, ref.ray_indices) and torch.equal(ts, ref.t_starts)


@pytest.mark.parametrize("n_steps", [1, 4])
def test_march_step_identical(lib, n_steps):
    gen = torch.Generator().manual_seed(4)
    scene = march_scene(gen, n_rays=300, n_steps_across=120)
    t = scene.t_near.clone()
    occ8 = scene.occ.to(torch.uint8).contiguous()
    for _ in range(6):  # a few inference rounds, resuming where the previous one stopped
        ref_ts, ref_next = march_step_torch(scene.rays_o, scene.rays_d, t, scene.t_far, scene.occ, scene.aabb,
                                            scene.step, n_steps)
        n = t.numel()
        ts, t_next = torch.full((n, n_steps), math.nan), torch.full((n,), math.nan)
        scan = float(64 * n_steps * scene.step)
        lib.thg_march_inference(ptr(scene.rays_o), ptr(scene.rays_d), ptr(t), ptr(scene.t_far), *grid_args(occ8, scene),
                                F(scene.step), I32(n_steps), F(scan), I64(n), ptr(ts), ptr(t_next))
        assert torch.equal(ts, ref_ts)
        assert torch.equal(t_next, ref_next)
        t = ref_next


# ----------------------------------------------------------------------------------------------- compositing


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("early_stop", [1e-4, 0.0])
def test_composite_forward_backward(lib, dtype, early_stop):
    gen = torch.Generator().manual_seed(5)
    p = packed_samples(gen, dtype=dtype)
    keep = ~ambiguous_rays(p, early_stop)[p.ray_indices] if early_stop > 0 else torch.ones_like(p.ray_indices,
                                                                                                 dtype=torch.bool)
    sig = p.sigmas.clone().requires_grad_(True)
    ref = composite_torch(sig, p.t_starts, p.t_ends, p.ray_indices, p.n_rays, early_stop)
    info = torch.zeros(p.n_rays, 3, dtype=torch.long)
    w = torch.full_like(p.sigmas, math.nan)
    code = F64 if dtype == torch.float64 else F32
    lib.thg_composite_forward(I32(code), ptr(p.ray_indices), I64(p.sigmas.numel()), ptr(p.sigmas),
                              ptr(p.t_starts), ptr(p.t_ends), I64(p.n_rays), D(early_stop), ptr(info), ptr(w))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert rel_err(w[keep], ref[keep]) < tol
    if early_stop > 0:
        assert bool((ref == 0).any()) and bool((w[keep] == 0).eq(ref[keep] == 0).all())
    grad_w = torch.randn(p.sigmas.shape, generator=gen, dtype=torch.float64).to(dtype)
    ref.backward(grad_w)
    grad = torch.full_like(p.sigmas, math.nan)
    lib.thg_composite_backward(I32(code), ptr(grad_w), ptr(p.sigmas), ptr(p.t_starts), ptr(p.t_ends), ptr(w),
                               ptr(info), I64(p.n_rays), ptr(grad))
    assert rel_err(grad[keep], sig.grad[keep]) < (1e-4 if dtype == torch.float32 else 1e-10)


def test_composite_inference_in_place(lib):
    gen = torch.Generator().manual_seed(6)
    sig, rgb, ts, trans, rgb_acc, depth_acc = inference_blocks(gen)
    ref = [trans.clone(), rgb_acc.clone(), depth_acc.clone()]
    composite_step_torch(sig, rgb, ts, 0.02, *ref, 1e-3)
    n, k = sig.shape
    lib.thg_composite_inference(ptr(sig), ptr(rgb), ptr(ts), I64(n), I32(k), F(0.02), F(1e-3), ptr(trans),
                                ptr(rgb_acc), ptr(depth_acc))
    for got, want in zip((trans, rgb_acc, depth_acc), ref):
        assert rel_err(got, want) < 1e-5


def test_occupancy_update(lib):
    gen = torch.Generator().manual_seed(7)
    density = torch.rand(4096, generator=gen) * 0.05
    new = torch.rand(4096, generator=gen) * 0.05
    new[torch.rand(4096, generator=gen) < 0.4] = -1.0
    ref_density = density.clone()
    ref_occ = update_occupancy_torch(ref_density, new, 0.9, 0.02)
    occ = torch.full((4096,), 7, dtype=torch.uint8)
    lib.thg_occupancy_update(ptr(density), ptr(new), I64(4096), F(0.9), F(0.02), ptr(occ))
    assert torch.equal(density, ref_density)
    assert torch.equal(occ.bool(), ref_occ) and int(occ.max()) == 1
