"""CUDA kernels (thg_nerf._C) against the PyTorch references, forward and backward (needs a GPU).

Every output is checked on fresh random inputs after the caching allocator was poisoned (freed blocks filled with
0xFF bytes: NaN as float, -1 as int64), so an output element a kernel forgets to write shows up. Tolerances:
max |cuda - ref| / max |ref| < 1e-4 in fp32; marching must give identical samples (bit for bit).
"""

from __future__ import annotations

import math

import pytest
import torch

from thg_nerf.ops import (
    backend,
    composite,
    composite_step,
    hash_encode,
    march_rays,
    march_step,
    selftest,
    update_occupancy,
)
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

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (kernels vs references)")
DEV = torch.device("cuda")
TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def extension(request):
    """The built (or JIT-compiled) extension; a GPU machine that cannot build it fails here, it does not skip.
    Installed with the self-test off, so that the public ops run the kernels, never a fallback to the references."""
    mp = pytest.MonkeyPatch()
    mp.delenv("THG_NERF_BACKEND", raising=False)
    module = backend.load_extension(jit=True)
    assert module is not None, "CUDA is available but thg_nerf._C could not be built or loaded"
    with backend.use_extension(module, self_test=False):
        yield module
    mp.undo()


def poison() -> None:
    """Leave the caching allocator's free blocks (small and large pools) full of 0xFF bytes."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    sizes = [4096] * 256 + [256 << 10] * 32 + [4 << 20] * 16 + [64 << 20] * 4
    blocks = [torch.empty(s, dtype=torch.uint8, device=DEV).fill_(0xFF) for s in sizes]
    torch.cuda.synchronize()
    del blocks


def cuda(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(DEV) for t in tensors]


# ----------------------------------------------------------------------------------------------- hash encoding


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
def test_hash_encode_fp32(layout):
    gen = torch.Generator().manual_seed(100)
    x, table = cuda(hash_points(layout, 5000, gen), hash_table(layout, gen))
    offsets, res = layout.tensors(DEV)
    xr, tr = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    ref = hash_encode_torch(xr, tr, offsets, res)
    grad_out = torch.randn(ref.shape, generator=gen).to(DEV)
    ref.backward(grad_out)

    xc, tc = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
    poison()
    out = hash_encode(xc, tc, offsets, res)
    assert out.dtype == torch.float32 and out.device.type == DEV.type and rel_err(out, ref) < TOL
    poison()
    out.backward(grad_out)
    assert rel_err(tc.grad, tr.grad) < TOL
    assert rel_err(xc.grad, xr.grad) < TOL
    outside = (x < 0) | (x > 1)
    assert bool((xc.grad[outside] == 0).all())

    # table-only gradient (the input-gradient path is skipped)
    tc2 = table.clone().requires_grad_(True)
    poison()
    hash_encode(x, tc2, offsets, res).backward(grad_out)
    assert rel_err(tc2.grad, tr.grad) < TOL


def test_hash_encode_many_points_in_one_cell():
    """Atomics under heavy contention: every point hits the same corners."""
    layout = LAYOUTS[0]
    offsets, res = layout.tensors(DEV)
    x = torch.full((100_000, 3), 0.37, device=DEV)
    table = hash_table(layout, torch.Generator().manual_seed(101)).to(DEV)
    tr, tc = table.clone().requires_grad_(True), table.clone().requires_grad_(True)
    hash_encode_torch(x, tr, offsets, res).sum().backward()
    poison()
    hash_encode(x, tc, offsets, res).sum().backward()
    assert rel_err(tc.grad, tr.grad) < TOL


def test_hash_encode_gradcheck_fp64():
    layout = LAYOUTS[0]
    gen = torch.Generator().manual_seed(102)
    offsets, res = layout.tensors(DEV)
    x = (0.05 + 0.9 * torch.rand(6, 3, generator=gen, dtype=torch.float64)).to(DEV).requires_grad_(True)
    table = hash_table(layout, gen, torch.float64).to(DEV).requires_grad_(True)
    fn = lambda a, b: hash_encode(a, b, offsets, res)  # noqa: E731
    assert fn(x, table).dtype == torch.float64
    assert rel_err(fn(x, table), hash_encode_torch(x, table, offsets, res)) < 1e-12
    assert torch.autograd.gradcheck(fn, (x, table), nondet_tol=1e-12)
    lay2 = LAYOUTS[1]
    off2, res2 = lay2.tensors(DEV)
    x2 = (0.05 + 0.9 * torch.rand(5, 2, generator=gen, dtype=torch.float64)).to(DEV).requires_grad_(True)
    t2 = hash_table(lay2, gen, torch.float64).to(DEV).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: hash_encode(a, b, off2, res2), (x2, t2), nondet_tol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS[:2], ids=layout_id)
def test_hash_encode_fp16_table(layout):
    gen = torch.Generator().manual_seed(103)
    x, table = cuda(hash_points(layout, 5000, gen), hash_table(layout, gen))
    offsets, res = layout.tensors(DEV)
    half = table.half()
    tr = half.float().requires_grad_(True)  # the fp32 reference on exactly the fp16 values
    ref = hash_encode_torch(x, tr, offsets, res)
    grad_out = torch.randn(ref.shape, generator=gen).to(DEV)
    ref.backward(grad_out.half().float())
    th = half.clone().requires_grad_(True)
    poison()
    out = hash_encode(x, th, offsets, res)
    assert out.dtype == torch.float16 and rel_err(out, ref) < 2e-3
    poison()
    out.backward(grad_out.half())
    assert th.grad.dtype == torch.float16 and rel_err(th.grad, tr.grad) < 2e-3


# ----------------------------------------------------------------------------------------------- ray marching


@pytest.mark.parametrize("kind", ["blobs", "noise"])
def test_march_rays_identical(kind):
    gen = torch.Generator().manual_seed(104)
    for n_rays, res, across, cap in ((500, (12, 10, 14), 173, 1024), (3000, (64, 64, 64), 512, 1024),
                                     (800, (5, 4, 6), 900, 9), (300, (33, 17, 9), 40, 4096)):
        scene = march_scene(gen, n_rays=n_rays, res=res, n_steps_across=across, kind=kind)
        for jitter in (scene.jitter, None):
            ref = march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb,
                                   scene.step, cap, jitter)
            args = cuda(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb)
            poison()
            got = march_rays(*args, scene.step, cap, None if jitter is None else jitter.to(DEV))
            assert got.ray_indices.dtype == torch.long and got.ray_indices.numel() > 100
            assert torch.equal(got.ray_indices.cpu(), ref.ray_indices)
            assert torch.equal(got.t_starts.cpu(), ref.t_starts)
            assert torch.equal(got.t_ends.cpu(), ref.t_ends)


def test_march_rays_degenerate():
    gen = torch.Generator().manual_seed(105)
    scene = march_scene(gen, n_rays=64)
    o, d, tn, tf, occ, aabb = cuda(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb)
    none = march_rays(o[:0], d[:0], tn[:0], tf[:0], occ, aabb, scene.step, 16)
    assert none.ray_indices.numel() == 0
    empty = march_rays(o, d, tn, tf, torch.zeros_like(occ), aabb, scene.step, 16)
    assert empty.t_starts.numel() == 0
    full = march_rays(o, d, tn, tf, torch.ones_like(occ), aabb, scene.step, 3)
    ref = march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, torch.ones_like(scene.occ),
                           scene.aabb, scene.step, 3)
    assert torch.equal(full.t_starts.cpu(), ref.t_starts)


@pytest.mark.parametrize("n_steps", [1, 4, 16])
def test_march_step_identical(n_steps):
    gen = torch.Generator().manual_seed(106)
    scene = march_scene(gen, n_rays=1000, res=(32, 32, 32), n_steps_across=300)
    o, d, tf, occ, aabb = cuda(scene.rays_o, scene.rays_d, scene.t_far, scene.occ, scene.aabb)
    t = scene.t_near.clone()
    for _ in range(8):
        ref, ref_next = march_step_torch(scene.rays_o, scene.rays_d, t, scene.t_far, scene.occ, scene.aabb,
                                         scene.step, n_steps)
        poison()
        got, got_next = march_step(o, d, t.to(DEV), tf, occ, aabb, scene.step, n_steps)
        assert torch.equal(got.cpu(), ref) and torch.equal(got_next.cpu(), ref_next)
        t = ref_next


# ----------------------------------------------------------------------------------------------- compositing


@pytest.mark.parametrize("early_stop", [1e-4, 0.0])
def test_composite_fp32(early_stop):
    gen = torch.Generator().manual_seed(107)
    p = packed_samples(gen, n_rays=3000, max_per_ray=200)
    keep = (~ambiguous_rays(p, early_stop)[p.ray_indices]).to(DEV) if early_stop > 0 else slice(None)
    sig, t0, t1, ri = cuda(p.sigmas, p.t_starts, p.t_ends, p.ray_indices)
    sr = sig.clone().requires_grad_(True)
    ref = composite_torch(sr, t0, t1, ri, p.n_rays, early_stop)
    grad_w = torch.randn(ref.shape, generator=gen).to(DEV)
    ref.backward(grad_w)
    sc = sig.clone().requires_grad_(True)
    poison()
    w = composite(sc, t0, t1, ri, p.n_rays, early_stop)
    assert w.dtype == torch.float32 and rel_err(w[keep], ref[keep]) < TOL
    if early_stop > 0:
        assert bool((w == 0).any())
    poison()
    w.backward(grad_w)
    assert rel_err(sc.grad[keep], sr.grad[keep]) < TOL
    assert bool(torch.isfinite(sc.grad).all())


def test_composite_gradcheck_fp64():
    gen = torch.Generator().manual_seed(108)
    p = packed_samples(gen, n_rays=6, max_per_ray=8, dtype=torch.float64, scale=20.0)
    assert not bool(ambiguous_rays(p, 1e-2, rel=0.05).any())
    sig, t0, t1, ri = cuda(p.sigmas, p.t_starts, p.t_ends, p.ray_indices)
    sig.requires_grad_(True)
    for early_stop in (0.0, 1e-2):
        fn = lambda s, es=early_stop: composite(s, t0, t1, ri, p.n_rays, es)  # noqa: E731
        assert fn(sig).dtype == torch.float64
        assert rel_err(fn(sig), composite_torch(sig, t0, t1, ri, p.n_rays, early_stop)) < 1e-12
        assert torch.autograd.gradcheck(fn, (sig,))


def test_composite_inference():
    gen = torch.Generator().manual_seed(109)
    blocks = cuda(*inference_blocks(gen, n_rays=4000, k=16))
    sig, rgb, ts = blocks[:3]
    ref = [b.clone() for b in blocks[3:]]
    composite_step_torch(sig, rgb, ts, 0.02, *ref, 1e-3)
    got = [b.clone() for b in blocks[3:]]
    composite_step(sig, rgb, ts, 0.02, *got, early_stop=1e-3)
    for g, r in zip(got, ref):
        assert rel_err(g, r) < TOL


def test_occupancy_update():
    gen = torch.Generator().manual_seed(110)
    density = (torch.rand(64**3, generator=gen) * 0.05).to(DEV)
    new = (torch.rand(64**3, generator=gen) * 0.05).to(DEV)
    new[torch.rand(64**3, generator=gen).to(DEV) < 0.4] = -1.0
    ref_density = density.clone()
    ref = update_occupancy_torch(ref_density, new, 0.9, 0.02)
    poison()
    occ = update_occupancy(density, new, decay=0.9, threshold=0.02)
    assert occ.dtype == torch.bool and torch.equal(occ, ref) and torch.equal(density, ref_density)


# ----------------------------------------------------------------------------------------------- backend


def test_backend_override_torch_on_cuda(monkeypatch):
    monkeypatch.setenv("THG_NERF_BACKEND", "torch")

    class NoKernels:
        def __getattr__(self, name):
            raise AssertionError("the extension must not be used with THG_NERF_BACKEND=torch")

    layout = LAYOUTS[0]
    offsets, res = layout.tensors(DEV)
    x, table = cuda(hash_points(layout, 100, torch.Generator().manual_seed(111)),
                    hash_table(layout, torch.Generator().manual_seed(112)))
    with backend.use_extension(NoKernels(), self_test=False):
        assert torch.equal(hash_encode(x, table, offsets, res), hash_encode_torch(x, table, offsets, res))
    assert backend.default_backend_name(DEV) == "torch"
    monkeypatch.setenv("THG_NERF_BACKEND", "cuda")
    assert backend.default_backend_name(DEV) == "cuda"


def test_self_test_passes(extension):
    """The first-use self-test (thg_nerf/ops/selftest.py) accepts the real kernels, within tens of milliseconds."""
    selftest.run_self_test(extension, DEV)  # warm-up: first launches, allocator
    results = selftest.run_self_test(extension, DEV)
    assert {op: c.detail for op, c in results.items() if not c.passed} == {}
    assert sum(c.ms for c in results.values()) < 500


def test_bad_arguments_raise_clean_errors():
    ext = backend.ext()
    x = torch.rand(10, 3, device=DEV)
    table = torch.rand(64, 3, device=DEV)  # level_dim 3 is not supported
    offsets = torch.tensor([0, 64], dtype=torch.int32, device=DEV)
    res = torch.tensor([3], dtype=torch.int32, device=DEV)
    with pytest.raises(RuntimeError, match="level_dim"):
        ext.hash_encode_forward(x, table, offsets, res)
    with pytest.raises(RuntimeError, match="CUDA"):
        ext.hash_encode_forward(x.cpu(), table[:, :2].contiguous(), offsets, res)
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.composite_forward(torch.rand(8, 2, device=DEV)[:, 0], torch.rand(8, device=DEV),
                              torch.rand(8, device=DEV), torch.zeros(8, dtype=torch.long, device=DEV), 1, 0.0)
    assert math.isfinite(float(ext.occupancy_update(torch.rand(8, device=DEV), torch.rand(8, device=DEV),
                                                    0.5, 0.1).sum()))
