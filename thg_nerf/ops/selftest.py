"""Self-test of a kernel module against the PyTorch references, run once when the CUDA extension is first used.

Every op runs once through its kernel wrapper (the autograd function, or the ``_*_kernel`` helper) with the
given module, on small reproducible inputs from :mod:`thg_nerf.ops.cases` moved to ``device``, and is
compared with its ``*_torch`` reference on the same device:

* ``hash_encode``: forward, table gradient and input gradient on the four test layouts (2D and 3D, dense and
  hashed levels, 1-8 features per level), 256 points each, fp32;
* ``march_rays``: packed training samples of 128 rays (with and without jitter, with a per-ray cap of 7);
* ``march_step``: three resumed inference rounds of 4 samples;
* ``composite``: packed weights and the sigma gradient (early termination on; rays whose transmittance comes
  within 0.1 % of the threshold are left out, their mask may legitimately flip);
* ``composite_step``: in-place inference accumulators; ``update_occupancy``: density and occupancy bits.

Values must agree to ``TOL`` relative to the largest reference value, sample ray indices and occupancy bits
exactly. An exception (a CUDA error, a failed argument check) fails that op. About 20 kernel launches: tens of
milliseconds on a GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from thg_nerf.ops import cases
from thg_nerf.ops.backend import OPS, OpCheck
from thg_nerf.ops.composite import _composite_step_kernel, _CompositeFunction, composite_step_torch, composite_torch
from thg_nerf.ops.hash_encoding import _HashEncodeFunction, hash_encode_torch
from thg_nerf.ops.occupancy import _update_occupancy_kernel, update_occupancy_torch
from thg_nerf.ops.raymarch import _march_rays_kernel, _march_step_kernel, march_rays_torch, march_step_torch

#: Largest accepted ``max |kernel - reference| / max |reference|`` (fp32 values and gradients).
TOL = 1e-4
SEED = 1234

Errors = dict[str, float]


def exact_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """0 when ``a`` and ``b`` have the same shape and values, else inf."""
    return 0.0 if a.shape == b.shape and torch.equal(a.cpu(), b.cpu()) else math.inf


def rel_err_finite(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error, inf on a shape mismatch or a non-finite value where the reference has a finite one."""
    if a.shape != b.shape or not torch.equal(torch.isfinite(a).cpu(), torch.isfinite(b).cpu()):
        return math.inf
    finite = torch.isfinite(b)
    return cases.rel_err(a[finite], b[finite])


def _check_hash(kernels: Any, dev: torch.device, gen: torch.Generator) -> Errors:
    err: Errors = {}
    for layout in cases.LAYOUTS:
        name = cases.layout_id(layout)
        offsets, res = layout.tensors(dev)
        x = cases.hash_points(layout, 256, gen).to(dev)
        table = cases.hash_table(layout, gen).to(dev)
        xr, tr = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
        ref = hash_encode_torch(xr, tr, offsets, res)
        grad_out = torch.randn(ref.shape, generator=gen).to(dev)
        ref.backward(grad_out)
        xk, tk = x.clone().requires_grad_(True), table.clone().requires_grad_(True)
        out = _HashEncodeFunction.apply(kernels, xk, tk, offsets, res)
        err[f"{name} forward"] = rel_err_finite(out, ref)
        out.backward(grad_out)
        err[f"{name} table gradient"] = math.inf if tk.grad is None else rel_err_finite(tk.grad, tr.grad)
        err[f"{name} input gradient"] = math.inf if xk.grad is None else rel_err_finite(xk.grad, xr.grad)
    return err


def _scene(dev: torch.device, gen: torch.Generator) -> tuple[list[torch.Tensor], float, torch.Tensor]:
    scene = cases.march_scene(gen, n_rays=128, n_steps_across=96)
    tensors = [t.to(dev) for t in (scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb)]
    return tensors, scene.step, scene.jitter.to(dev)


def _check_march_rays(kernels: Any, dev: torch.device, gen: torch.Generator) -> Errors:
    tensors, step, jitter = _scene(dev, gen)
    err: Errors = {}
    for cap, jit in ((1024, jitter), (7, None)):
        ref = march_rays_torch(*tensors, step, cap, jit)
        got = _march_rays_kernel(kernels, *tensors, step, cap, jit)
        name = f"cap {cap}{' jittered' if jit is not None else ''}"
        err[f"{name} ray_indices"] = exact_err(got.ray_indices, ref.ray_indices)
        err[f"{name} t_starts"] = rel_err_finite(got.t_starts, ref.t_starts)
        err[f"{name} t_ends"] = rel_err_finite(got.t_ends, ref.t_ends)
    return err


def _check_march_step(kernels: Any, dev: torch.device, gen: torch.Generator) -> Errors:
    (rays_o, rays_d, t_near, t_far, occ, aabb), step, _ = _scene(dev, gen)
    err: Errors = {}
    t = t_near.clone()
    for k in range(3):
        ref_ts, ref_next = march_step_torch(rays_o, rays_d, t, t_far, occ, aabb, step, 4)
        ts, t_next = _march_step_kernel(kernels, rays_o, rays_d, t, t_far, occ, aabb, step, 4)
        err[f"round {k} t_starts"] = rel_err_finite(ts, ref_ts)
        err[f"round {k} t_next"] = rel_err_finite(t_next, ref_next)
        t = ref_next
    return err


def _check_composite(kernels: Any, dev: torch.device, gen: torch.Generator) -> Errors:
    early_stop = 1e-4
    p = cases.packed_samples(gen, n_rays=48, max_per_ray=32)
    keep = ~cases.ambiguous_rays(p, early_stop)[p.ray_indices]
    sig, t0, t1, ri, keep = (t.to(dev) for t in (p.sigmas, p.t_starts, p.t_ends, p.ray_indices, keep))
    sr, sk = sig.clone().requires_grad_(True), sig.clone().requires_grad_(True)
    ref = composite_torch(sr, t0, t1, ri, p.n_rays, early_stop)
    w = _CompositeFunction.apply(kernels, sk, t0, t1, ri, p.n_rays, early_stop)
    grad_w = torch.randn(p.sigmas.shape, generator=gen).to(dev)
    ref.backward(grad_w)
    w.backward(grad_w)
    return {"weights": rel_err_finite(w[keep], ref[keep]),
            "sigma gradient": math.inf if sk.grad is None else rel_err_finite(sk.grad[keep], sr.grad[keep])}


def _check_composite_step(kernels: Any, dev: torch.device, gen: torch.Generator) -> Errors:
    sig, rgb, ts, *acc = (t.to(dev) for t in cases.inference_blocks(gen, n_rays=48, k=8))
    ref = [a.clone() for a in acc]
    composite_step_torch(sig, rgb, ts, 0.02, *ref, 1e-3)
    _composite_step_kernel(kernels, sig, rgb, ts, 0.02, *acc, 1e-3)
    return {name: rel_err_finite(a, r) for name, a, r in zip(("trans", "rgb_acc", "depth_acc"), acc, ref)}


def _check_occupancy(kernels: Any, dev: torch.device, gen: torch.Generator) -> Errors:
    density = torch.rand(16, 16, 16, generator=gen) * 0.05
    new = torch.rand(16, 16, 16, generator=gen) * 0.05
    new[torch.rand(16, 16, 16, generator=gen) < 0.4] = -1.0
    density, new = density.to(dev), new.to(dev)
    ref_density = density.clone()
    ref_occ = update_occupancy_torch(ref_density, new, 0.9, 0.02)
    occ = _update_occupancy_kernel(kernels, density, new, 0.9, 0.02)
    return {"density": rel_err_finite(density, ref_density), "occupancy": exact_err(occ, ref_occ)}


CHECKS: dict[str, Callable[[Any, torch.device, torch.Generator], Errors]] = {
    "hash_encode": _check_hash, "march_rays": _check_march_rays, "march_step": _check_march_step,
    "composite": _check_composite, "composite_step": _check_composite_step, "update_occupancy": _check_occupancy,
}
assert tuple(CHECKS) == OPS


def _verdict(errors: Errors) -> tuple[bool, str]:
    worst_name, worst = max(errors.items(), key=lambda kv: kv[1])
    if worst <= TOL:
        return True, f"max rel err {worst:.1e}"
    bad = [name for name, e in errors.items() if e > TOL]
    what = "differs" if math.isinf(worst) else f"rel err {worst:.1e} > {TOL:.0e}"
    more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
    return False, f"{worst_name} {what}{more}"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_self_test(kernels: Any, device: torch.device) -> dict[str, OpCheck]:
    """Check every op of the kernel module ``kernels`` against its reference on ``device`` (see module doc)."""
    gen = torch.Generator().manual_seed(SEED)
    results: dict[str, OpCheck] = {}
    # first use may come inside no_grad, inference_mode or autocast regions: the checks need none of them
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
        for op, check in CHECKS.items():
            t0 = time.perf_counter()
            try:
                passed, detail = _verdict(check(kernels, device, gen))
                _sync(device)
            except Exception as e:  # a CUDA error or a binding check: this op cannot be trusted
                first = (str(e).strip().splitlines() or [""])[0]
                passed, detail = False, f"{type(e).__name__}: {first[:200]}"
            results[op] = OpCheck(op, passed, detail, (time.perf_counter() - t0) * 1e3)
    return results
