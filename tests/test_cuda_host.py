"""The CUDA kernels' per-thread logic, compiled for the CPU, behind the public ops (no GPU needed).

``cuda_ext/host/harness.cpp`` runs the very ``__host__ __device__`` bodies the kernels run, sequentially.
:class:`HostExt` exposes it with the API of ``cuda_ext/bindings.cpp`` (same names, argument order, dtypes and
return values) and replaces the extension behind the public ops, so these tests check against the PyTorch
references both the kernels' arithmetic (indexing, hashing, bit-exact DDA marching, the hand-written compositing
backward, inference ops) and the Python autograd wrappers that call the extension.
Not covered here: launch configuration, atomics under contention, fp16 tables and the C++ binding itself
(tests/test_cuda_ops.py, which needs a GPU).
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from thg_nerf.ops import backend, composite, composite_step, hash_encode, march_rays, march_step, update_occupancy
from thg_nerf.ops.cases import (
    LAYOUTS,
    ambiguous_rays,
    hash_points,
    hash_table,
    inference_blocks,
    layout_id,
    march_scene,
    packed_samples,
    rel_err,
)
from thg_nerf.ops.composite import composite_step_torch, composite_torch
from thg_nerf.ops.hash_encoding import hash_encode_torch
from thg_nerf.ops.occupancy import update_occupancy_torch
from thg_nerf.ops.raymarch import march_rays_torch, march_step_torch

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "cuda_ext" / "host" / "harness.cpp"
I64, I32, F, D = ctypes.c_int64, ctypes.c_int32, ctypes.c_float, ctypes.c_double


def ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    if t is None:
        return ctypes.c_void_p(None)
    assert t.is_contiguous() and t.device.type == "cpu"
    return ctypes.c_void_p(t.data_ptr())


def check(t: torch.Tensor, dtype: torch.dtype, shape: tuple[int, ...] | None = None) -> None:
    """The binding's argument checks (dtype, contiguity, shape)."""
    assert t.dtype == dtype and t.is_contiguous(), (t.dtype, dtype)
    assert shape is None or tuple(t.shape) == shape, (tuple(t.shape), shape)


class HostExt:
    """``thg_nerf._C``'s API on CPU tensors, backed by the kernel bodies in the host harness."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    def _hash_args(self, x, table, offsets, resolutions):
        compute = torch.float64 if table.dtype == torch.float64 else torch.float32
        check(x, compute)
        check(offsets, torch.int32)
        check(resolutions, torch.int32)
        n, levels, feat = x.shape[0], resolutions.numel(), table.shape[1]
        code = 2 if table.dtype == torch.float64 else 0
        return n, levels, feat, (I64(n), I32(x.shape[1]), I32(levels), I32(feat), I32(code))

    def hash_encode_forward(self, x, table, offsets, resolutions):
        n, levels, feat, tail = self._hash_args(x, table, offsets, resolutions)
        out = torch.full((n, levels * feat), math.nan, dtype=table.dtype)
        assert self.lib.thg_hash_forward(ptr(x), ptr(table), ptr(offsets), ptr(resolutions), ptr(out), *tail) == 0
        return out

    def hash_encode_backward(self, grad_out, x, table, offsets, resolutions, input_grad):
        n, levels, feat, tail = self._hash_args(x, table, offsets, resolutions)
        check(grad_out, table.dtype, (n, levels * feat))
        grad_table = torch.zeros_like(table)
        grad_x = torch.full((n, levels, x.shape[1]), math.nan, dtype=x.dtype) if input_grad else None
        assert self.lib.thg_hash_backward(ptr(grad_out), ptr(x), ptr(table), ptr(offsets), ptr(resolutions),
                                          ptr(grad_table), ptr(grad_x), *tail) == 0
        return [grad_table, grad_x.sum(1) if input_grad else None]

    @staticmethod
    def _rays(rays_o, rays_d, t_a, t_b, occ, aabb):
        n = rays_o.shape[0]
        for t, shape in ((rays_o, (n, 3)), (rays_d, (n, 3)), (t_a, (n,)), (t_b, (n,)), (aabb, (6,))):
            check(t, torch.float32, shape)
        check(occ, torch.bool)
        occ8 = occ.view(torch.uint8)
        return n, occ8, (ptr(occ8), *(I32(g) for g in occ.shape), ptr(aabb))

    def march_rays_train(self, rays_o, rays_d, t_near, t_far, occ, aabb, step, max_samples, jitter):
        n, occ8, grid = self._rays(rays_o, rays_d, t_near, t_far, occ, aabb)
        if jitter is not None:
            check(jitter, torch.float32, (n,))
        span = float((t_far - t_near).max()) if n else 0.0
        n_steps = max(1, int(span / step) + 1)
        counts = torch.full((n,), -7, dtype=torch.long)

        def run(fill, offsets, ri, ts, te):
            self.lib.thg_march_train(I32(fill), ptr(rays_o), ptr(rays_d), ptr(t_near), ptr(t_far), ptr(jitter),
                                     *grid, F(step), I64(n_steps), I32(max_samples), I64(n), ptr(counts),
                                     ptr(offsets), ptr(ri), ptr(ts), ptr(te))

        run(0, None, None, None, None)
        offsets = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())
        ri = torch.full((total,), -7, dtype=torch.long)
        ts, te = torch.full((total,), math.nan), torch.full((total,), math.nan)
        run(1, offsets, ri, ts, te)
        return [ri, ts, te]

    def march_rays_inference(self, rays_o, rays_d, t, t_far, occ, aabb, step, n_steps):
        n, occ8, grid = self._rays(rays_o, rays_d, t, t_far, occ, aabb)
        ts, t_next = torch.full((n, n_steps), math.nan), torch.full((n,), math.nan)
        self.lib.thg_march_inference(ptr(rays_o), ptr(rays_d), ptr(t), ptr(t_far), *grid, F(step), I32(n_steps),
                                     F(float(64 * n_steps * step)), I64(n), ptr(ts), ptr(t_next))
        return [ts, t_next]

    def composite_forward(self, sigmas, t_starts, t_ends, ray_indices, n_rays, early_stop):
        assert sigmas.dtype in (torch.float32, torch.float64)
        for t in (sigmas, t_starts, t_ends):
            check(t, sigmas.dtype, (sigmas.numel(),))
        check(ray_indices, torch.long, (sigmas.numel(),))
        info = torch.zeros(n_rays, 3, dtype=torch.long)
        w = torch.full_like(sigmas, math.nan)
        code = 2 if sigmas.dtype == torch.float64 else 0
        self.lib.thg_composite_forward(I32(code), ptr(ray_indices), I64(sigmas.numel()), ptr(sigmas),
                                       ptr(t_starts), ptr(t_ends), I64(n_rays), D(early_stop), ptr(info), ptr(w))
        return [w, info]

    def composite_backward(self, grad_w, sigmas, t_starts, t_ends, weights, info):
        for t in (grad_w, sigmas, t_starts, t_ends, weights):
            check(t, sigmas.dtype, (sigmas.numel(),))
        grad = torch.full_like(sigmas, math.nan)
        code = 2 if sigmas.dtype == torch.float64 else 0
        self.lib.thg_composite_backward(I32(code), ptr(grad_w), ptr(sigmas), ptr(t_starts), ptr(t_ends),
                                        ptr(weights), ptr(info), I64(info.shape[0]), ptr(grad))
        return grad

    def composite_inference(self, sigmas, rgbs, t_starts, step, trans, rgb_acc, depth_acc, early_stop):
        n, k = sigmas.shape
        for t, shape in ((sigmas, (n, k)), (rgbs, (n, k, 3)), (t_starts, (n, k)), (trans, (n,)),
                         (rgb_acc, (n, 3)), (depth_acc, (n,))):
            check(t, torch.float32, shape)
        self.lib.thg_composite_inference(ptr(sigmas), ptr(rgbs), ptr(t_starts), I64(n), I32(k), F(step),
                                         F(early_stop), ptr(trans), ptr(rgb_acc), ptr(depth_acc))

    def occupancy_update(self, density, new_density, decay, threshold):
        check(density, torch.float32)
        check(new_density, torch.float32, tuple(density.shape))
        occ = torch.full(density.shape, 7, dtype=torch.uint8)
        self.lib.thg_occupancy_update(ptr(density), ptr(new_density), I64(density.numel()), F(decay),
                                      F(threshold), ptr(occ))
        assert int(occ.max()) <= 1
        return occ.view(torch.bool)


@pytest.fixture(scope="module")
def host_ext(tmp_path_factory) -> HostExt:
    """The harness compiled with g++ (skips without a C++ compiler)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build the kernel host harness")
    out = tmp_path_factory.mktemp("harness") / "harness.so"
    subprocess.run([cxx, "-O2", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC", str(HARNESS), "-o",
                    str(out)], check=True)
    return HostExt(ctypes.CDLL(str(out)))


@pytest.fixture
def kernels(host_ext, monkeypatch) -> Iterator[HostExt]:
    """Route the public ops on CPU tensors through the harness, as if they were on a GPU with the extension built
    (self-test off: these tests must see the kernels, never a fallback to the references)."""
    monkeypatch.delenv("THG_NERF_BACKEND", raising=False)
    with backend.use_extension(host_ext, device_type="cpu", self_test=False):
        yield host_ext


# ----------------------------------------------------------------------------------------------- hash encoding


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_hash_encoding(kernels, layout, dtype):
    gen = torch.Generator().manual_seed(1)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    x = hash_points(layout, 300, gen, dtype)
    table = hash_table(layout, gen, dtype)
    offsets, res = layout.tensors(torch.device("cpu"))
    xr, tr = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    ref = hash_encode_torch(xr, tr, offsets, res)
    grad_out = torch.randn(ref.shape, generator=gen, dtype=torch.float64).to(dtype)
    ref.backward(grad_out)
    xk, tk = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    out = hash_encode(xk, tk, offsets, res)
    assert out.dtype == dtype and rel_err(out, ref) < tol
    out.backward(grad_out)
    assert rel_err(tk.grad, tr.grad) < tol
    assert rel_err(xk.grad, xr.grad) < (1e-4 if dtype == torch.float32 else 1e-10)
    outside = (x < 0) | (x > 1)
    assert outside.any() and bool((xk.grad[outside] == 0).all())
    tk2 = table.clone().requires_grad_(True)  # table-only gradient: no input-gradient pass
    hash_encode(x, tk2, offsets, res).backward(grad_out)
    assert rel_err(tk2.grad, tr.grad) < tol


def test_hash_encoding_gradcheck_fp64(kernels):
    layout = LAYOUTS[0]
    gen = torch.Generator().manual_seed(8)
    offsets, res = layout.tensors(torch.device("cpu"))
    x = (0.05 + 0.9 * torch.rand(5, 3, generator=gen, dtype=torch.float64)).requires_grad_(True)
    table = hash_table(layout, gen, torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: hash_encode(a, b, offsets, res), (x, table))


# ----------------------------------------------------------------------------------------------- ray marching


@pytest.mark.parametrize("kind", ["blobs", "noise"])
@pytest.mark.parametrize("cap", [1024, 7])
def test_march_rays_identical_samples(kernels, kind, cap):
    gen = torch.Generator().manual_seed(2)
    for across in (40, 173):
        scene = march_scene(gen, n_rays=400, kind=kind, n_steps_across=across)
        for jitter in (scene.jitter, None):
            args = (scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb, scene.step, cap,
                    jitter)
            ref = march_rays_torch(*args)
            got = march_rays(*args)
            assert ref.ray_indices.numel() > 100
            assert torch.equal(got.ray_indices, ref.ray_indices)
            assert torch.equal(got.t_starts, ref.t_starts)
            assert torch.equal(got.t_ends, ref.t_ends)


def test_march_skipping_fine_steps_in_coarse_cells(kernels):
    """Many samples per empty cell: the DDA jumps must land on the same lattice as the reference."""
    gen = torch.Generator().manual_seed(3)
    scene = march_scene(gen, n_rays=200, res=(5, 4, 6), n_steps_across=900)
    args = (scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb, scene.step, 4096,
            scene.jitter)
    ref, got = march_rays_torch(*args), march_rays(*args)
    assert torch.equal(got.ray_indices, ref.ray_indices) and torch.equal(got.t_starts, ref.t_starts)


@pytest.mark.parametrize("n_steps", [1, 4])
def test_march_step_identical(kernels, n_steps):
    gen = torch.Generator().manual_seed(4)
    scene = march_scene(gen, n_rays=300, n_steps_across=120)
    t = scene.t_near.clone()
    for _ in range(6):  # a few inference rounds, resuming where the previous one stopped
        args = (scene.rays_o, scene.rays_d, t, scene.t_far, scene.occ, scene.aabb, scene.step, n_steps)
        ref_ts, ref_next = march_step_torch(*args)
        ts, t_next = march_step(*args)
        assert torch.equal(ts, ref_ts) and torch.equal(t_next, ref_next)
        t = ref_next


# ----------------------------------------------------------------------------------------------- compositing


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("early_stop", [1e-4, 0.0])
def test_composite_forward_backward(kernels, dtype, early_stop):
    gen = torch.Generator().manual_seed(5)
    p = packed_samples(gen, dtype=dtype)
    keep = ~ambiguous_rays(p, early_stop)[p.ray_indices] if early_stop > 0 else slice(None)
    sr, sk = p.sigmas.clone().requires_grad_(True), p.sigmas.clone().requires_grad_(True)
    ref = composite_torch(sr, p.t_starts, p.t_ends, p.ray_indices, p.n_rays, early_stop)
    w = composite(sk, p.t_starts, p.t_ends, p.ray_indices, p.n_rays, early_stop)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert w.dtype == dtype and rel_err(w[keep], ref[keep]) < tol
    if early_stop > 0:
        assert bool((ref == 0).any()) and bool((w[keep] == 0).eq(ref[keep] == 0).all())
    grad_w = torch.randn(p.sigmas.shape, generator=gen, dtype=torch.float64).to(dtype)
    ref.backward(grad_w)
    w.backward(grad_w)
    assert rel_err(sk.grad[keep], sr.grad[keep]) < (1e-4 if dtype == torch.float32 else 1e-10)


def test_composite_gradcheck_fp64(kernels):
    gen = torch.Generator().manual_seed(9)
    p = packed_samples(gen, n_rays=6, max_per_ray=8, dtype=torch.float64, scale=20.0)
    assert not bool(ambiguous_rays(p, 1e-2, rel=0.05).any())
    sig = p.sigmas.clone().requires_grad_(True)
    for early_stop in (0.0, 1e-2):
        assert torch.autograd.gradcheck(
            lambda s, es=early_stop: composite(s, p.t_starts, p.t_ends, p.ray_indices, p.n_rays, es), (sig,))


def test_composite_inference_in_place(kernels):
    gen = torch.Generator().manual_seed(6)
    sig, rgb, ts, trans, rgb_acc, depth_acc = inference_blocks(gen)
    ref = [trans.clone(), rgb_acc.clone(), depth_acc.clone()]
    composite_step_torch(sig, rgb, ts, 0.02, *ref, 1e-3)
    composite_step(sig, rgb, ts, 0.02, trans, rgb_acc, depth_acc, early_stop=1e-3)
    for got, want in zip((trans, rgb_acc, depth_acc), ref):
        assert rel_err(got, want) < 1e-5


def test_occupancy_update(kernels):
    gen = torch.Generator().manual_seed(7)
    density = torch.rand(16, 16, 16, generator=gen) * 0.05
    new = torch.rand(16, 16, 16, generator=gen) * 0.05
    new[torch.rand(16, 16, 16, generator=gen) < 0.4] = -1.0
    ref_density = density.clone()
    ref_occ = update_occupancy_torch(ref_density, new, 0.9, 0.02)
    occ = update_occupancy(density, new, decay=0.9, threshold=0.02)
    assert torch.equal(density, ref_density)
    assert occ.dtype == torch.bool and torch.equal(occ, ref_occ) and bool(occ.any())
