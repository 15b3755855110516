#!/usr/bin/env python3
"""Run every CUDA op of thg_nerf once on small inputs and compare with the references (exit 1 on a mismatch).

Meant to run under ``compute-sanitizer --tool memcheck`` with ``PYTORCH_NO_CUDA_MEMORY_CACHING=1`` (every tensor
its own allocation, so out-of-bounds accesses are caught); tools/run_gpu_checks.sh does that. The public ops run
the kernels with the first-use self-test off (a failing kernel must show here, not fall back); the self-test
itself then runs too, so the sanitizer also covers its inputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thg_nerf.ops import (  # noqa: E402
    backend,
    composite,
    composite_step,
    hash_encode,
    march_rays,
    march_step,
    selftest,
    update_occupancy,
)
from thg_nerf.ops.cases import (  # noqa: E402
    LAYOUTS,
    hash_points,
    hash_table,
    inference_blocks,
    march_scene,
    packed_samples,
    rel_err,
)
from thg_nerf.ops.composite import composite_step_torch, composite_torch  # noqa: E402
from thg_nerf.ops.hash_encoding import hash_encode_torch  # noqa: E402
from thg_nerf.ops.occupancy import update_occupancy_torch  # noqa: E402
from thg_nerf.ops.raymarch import march_rays_torch, march_step_torch  # noqa: E402


def main() -> int:
    if not torch.cuda.is_available():
        print("CUDA is not available: nothing to check")
        return 0
    dev = torch.device("cuda")
    module = backend.load_extension(jit=True)
    assert module is not None, "the CUDA extension is not available"
    with backend.use_extension(module, self_test=False):
        failures = check_ops(dev)
    for op, check in selftest.run_self_test(module, dev).items():
        print(f"{'ok  ' if check.passed else 'FAIL'} self-test {op}: {check.detail}")
        if not check.passed:
            failures.append(f"self-test {op}")
    torch.cuda.synchronize()
    print("all ops ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


def check_ops(dev: torch.device) -> list[str]:
    """Every public op on ``dev`` against its reference; the names of the failed checks."""
    gen = torch.Generator().manual_seed(0)
    failures = []

    def expect(name: str, ok: bool) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            failures.append(name)

    for layout in LAYOUTS:
        offsets, res = layout.tensors(dev)
        for dtype in (torch.float32, torch.float16, torch.float64):
            x = hash_points(layout, 257, gen).to(dev).requires_grad_(True)
            table = hash_table(layout, gen).to(device=dev, dtype=dtype).requires_grad_(True)
            out = hash_encode(x, table, offsets, res)
            out.float().square().sum().backward()
            ref = hash_encode_torch(x.detach(), table.detach().float(), offsets, res)
            tol = 2e-3 if dtype == torch.float16 else 1e-4
            expect(f"hash_encode D{layout.dim} F{layout.level_dim} {dtype}", rel_err(out, ref) < tol
                   and bool(torch.isfinite(table.grad.float()).all()) and bool(torch.isfinite(x.grad).all()))

    scene = march_scene(gen, n_rays=200, n_steps_across=150)
    args = [t.to(dev) for t in (scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb)]
    got = march_rays(*args, scene.step, 64, scene.jitter.to(dev))
    ref = march_rays_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb,
                           scene.step, 64, scene.jitter)
    expect("march_rays", torch.equal(got.t_starts.cpu(), ref.t_starts))
    ts, t_next = march_step(args[0], args[1], args[2], args[3], args[4], args[5], scene.step, 4)
    rts, rnext = march_step_torch(scene.rays_o, scene.rays_d, scene.t_near, scene.t_far, scene.occ, scene.aabb,
                                  scene.step, 4)
    expect("march_step", torch.equal(ts.cpu(), rts) and torch.equal(t_next.cpu(), rnext))

    p = packed_samples(gen, n_rays=100)
    sig, t0, t1, ri = (t.to(dev) for t in (p.sigmas, p.t_starts, p.t_ends, p.ray_indices))
    sig.requires_grad_(True)
    w = composite(sig, t0, t1, ri, p.n_rays, 0.0)
    w.sum().backward()
    expect("composite", rel_err(w, composite_torch(sig.detach(), t0, t1, ri, p.n_rays, 0.0)) < 1e-4
           and bool(torch.isfinite(sig.grad).all()))

    blocks = [t.to(dev) for t in inference_blocks(gen)]
    ref_acc = [b.clone() for b in blocks[3:]]
    composite_step_torch(*blocks[:3], 0.02, *ref_acc, 1e-3)
    composite_step(*blocks[:3], 0.02, *blocks[3:], early_stop=1e-3)
    expect("composite_step", all(rel_err(a, b) < 1e-4 for a, b in zip(blocks[3:], ref_acc)))

    density = torch.rand(16**3, generator=gen).to(dev)
    new = torch.rand(16**3, generator=gen).to(dev) - 0.3
    ref_density = density.clone()
    ref_occ = update_occupancy_torch(ref_density, new, 0.9, 0.5)
    expect("update_occupancy", torch.equal(update_occupancy(density, new, 0.9, 0.5), ref_occ))
    return failures


if __name__ == "__main__":
    sys.exit(main())
