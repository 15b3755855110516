"""Self-test on first use and per-op fallback of the kernel backend (thg_nerf/ops/backend.py, selftest.py), on
the CPU: a fake extension with the API of cuda_ext/bindings.cpp serves CPU tensors through
``backend.use_extension``. It computes the torch references, optionally with one function's output nudged or
raising a RuntimeError as a CUDA error would. The kernels' own logic is checked too, through the host harness
of tests/test_cuda_host.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
from test_cuda_host import host_ext  # noqa: F401  (fixture: the kernel bodies compiled for the CPU)

from thg_nerf.cli.main import main
from thg_nerf.errors import ThgError
from thg_nerf.log import get_logger
from thg_nerf.ops import backend, cases, composite, composite_step, hash_encode, march_rays, march_step, selftest
from thg_nerf.ops import update_occupancy as update_occupancy_op
from thg_nerf.ops.composite import composite_step_torch, composite_torch
from thg_nerf.ops.hash_encoding import hash_encode_torch
from thg_nerf.ops.occupancy import update_occupancy_torch
from thg_nerf.ops.raymarch import march_rays_torch, march_step_torch

#: Each function of the extension API and the public op whose self-test must catch a fault in it.
FUNCTION_OP = {
    "hash_encode_forward": "hash_encode", "hash_encode_backward": "hash_encode",
    "march_rays_train": "march_rays", "march_rays_inference": "march_step",
    "composite_forward": "composite", "composite_backward": "composite",
    "composite_inference": "composite_step", "occupancy_update": "update_occupancy",
}
CUDA_ERROR = "CUDA error: an illegal memory access was encountered"


def nudge(t: torch.Tensor) -> None:
    """Change one element of ``t`` in place: flip a bool, or add 1 % to the largest finite magnitude."""
    flat = t.view(-1)
    if t.dtype == torch.bool:
        flat[0] = ~flat[0]
        return
    mag = torch.where(torch.isfinite(flat), flat.abs(), torch.zeros_like(flat))
    i = int(mag.argmax())
    flat[i] += 0.01 * mag[i] + 1e-3


class FakeExt:
    """``thg_nerf._C``'s API on CPU tensors, computed by the torch references; ``fault`` = (function, "nudge" or
    "raise") corrupts one function. ``calls`` counts the calls per function."""

    def __init__(self, fault: tuple[str, str] | None = None) -> None:
        self.fault = fault
        self.calls: Counter[str] = Counter()

    def _enter(self, name: str) -> bool:
        """Count the call; raise for a "raise" fault; True when the output must be nudged."""
        self.calls[name] += 1
        if self.fault is not None and self.fault[0] == name:
            if self.fault[1] == "raise":
                raise RuntimeError(CUDA_ERROR)
            return True
        return False

    def hash_encode_forward(self, x, table, offsets, resolutions):
        bad = self._enter("hash_encode_forward")
        out = hash_encode_torch(x, table, offsets, resolutions)
        if bad:
            nudge(out)
        return out

    def hash_encode_backward(self, grad_out, x, table, offsets, resolutions, input_grad):
        bad = self._enter("hash_encode_backward")
        with torch.enable_grad():
            xr, tr = x.detach().requires_grad_(input_grad), table.detach().requires_grad_(True)
            inputs = (tr, xr) if input_grad else (tr,)
            grads = torch.autograd.grad(hash_encode_torch(xr, tr, offsets, resolutions), inputs, grad_out)
        if bad:
            nudge(grads[0])
        return [grads[0], grads[1] if input_grad else None]

    def march_rays_train(self, rays_o, rays_d, t_near, t_far, occ, aabb, step, max_samples, jitter):
        bad = self._enter("march_rays_train")
        out = march_rays_torch(rays_o, rays_d, t_near, t_far, occ, aabb, step, max_samples, jitter)
        if bad:
            nudge(out.t_starts)
        return list(out)

    def march_rays_inference(self, rays_o, rays_d, t, t_far, occ, aabb, step, n_steps):
        bad = self._enter("march_rays_inference")
        ts, t_next = march_step_torch(rays_o, rays_d, t, t_far, occ, aabb, step, n_steps)
        if bad:
            nudge(ts)
        return [ts, t_next]

    def composite_forward(self, sigmas, t_starts, t_ends, ray_indices, n_rays, early_stop):
        bad = self._enter("composite_forward")
        w = composite_torch(sigmas, t_starts, t_ends, ray_indices, n_rays, early_stop)
        counts = torch.bincount(ray_indices, minlength=n_rays)
        begin = torch.cumsum(counts, 0) - counts
        # info[:, 2]: samples per ray whose transmittance (computed as the reference does) is >= early_stop
        tau = sigmas * (t_ends - t_starts)
        cs = torch.cumsum(tau.double(), 0)
        base = torch.where(begin > 0, cs[(begin - 1).clamp_min(0)], torch.zeros(n_rays, dtype=torch.float64))
        trans = torch.exp(-(cs - tau.double() - base[ray_indices]).to(sigmas.dtype))
        alive = torch.zeros(n_rays, dtype=torch.long).index_add_(0, ray_indices, (trans >= early_stop).long())
        if bad:
            nudge(w)
        return [w, torch.stack([begin, begin + counts, alive], 1)]

    def composite_backward(self, grad_w, sigmas, t_starts, t_ends, weights, info):
        bad = self._enter("composite_backward")
        counts = info[:, 1] - info[:, 0]
        ray_indices = torch.repeat_interleave(torch.arange(info.shape[0]), counts)
        rank = torch.arange(sigmas.numel()) - info[ray_indices, 0]
        g = torch.where(rank < info[ray_indices, 2], grad_w, torch.zeros_like(grad_w))
        with torch.enable_grad():
            s = sigmas.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(composite_torch(s, t_starts, t_ends, ray_indices, info.shape[0], 0.0), s, g)
        if bad:
            nudge(grad)
        return grad

    def composite_inference(self, sigmas, rgbs, t_starts, step, trans, rgb_acc, depth_acc, early_stop):
        bad = self._enter("composite_inference")
        composite_step_torch(sigmas, rgbs, t_starts, step, trans, rgb_acc, depth_acc, early_stop)
        if bad:
            nudge(rgb_acc)

    def occupancy_update(self, density, new_density, decay, threshold):
        bad = self._enter("occupancy_update")
        occ = update_occupancy_torch(density, new_density, decay, threshold)
        if bad:
            nudge(occ)
        return occ


@pytest.fixture
def warnings_log() -> Iterator[list[str]]:
    """Messages of the warnings the package logger emits during the test."""
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                records.append(record.getMessage())

    handler = ListHandler()
    get_logger().addHandler(handler)
    yield records
    get_logger().removeHandler(handler)


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv("THG_NERF_BACKEND", raising=False)


def run_all_ops(gen: torch.Generator) -> dict[str, tuple[object, object]]:
    """Every public op on fresh CPU inputs: ``{op: (result, reference result)}`` (gradients included)."""
    out: dict[str, tuple[object, object]] = {}
    layout = cases.LAYOUTS[0]
    offsets, res = layout.tensors(torch.device("cpu"))
    x, table = cases.hash_points(layout, 64, gen), cases.hash_table(layout, gen)
    tk, tr = table.clone().requires_grad_(True), table.clone().requires_grad_(True)
    hash_encode(x, tk, offsets, res).square().sum().backward()
    hash_encode_torch(x, tr, offsets, res).square().sum().backward()
    out["hash_encode"] = (tk.grad, tr.grad)

    s = cases.march_scene(gen, n_rays=64, n_steps_across=64)
    args = (s.rays_o, s.rays_d, s.t_near, s.t_far, s.occ, s.aabb, s.step)
    out["march_rays"] = (march_rays(*args, 16, s.jitter).t_starts, march_rays_torch(*args, 16, s.jitter).t_starts)
    out["march_step"] = (march_step(*args, 4)[0], march_step_torch(*args, 4)[0])

    p = cases.packed_samples(gen, n_rays=16, max_per_ray=16)
    sk, sr = p.sigmas.clone().requires_grad_(True), p.sigmas.clone().requires_grad_(True)
    composite(sk, p.t_starts, p.t_ends, p.ray_indices, p.n_rays, 0.0).sum().backward()
    composite_torch(sr, p.t_starts, p.t_ends, p.ray_indices, p.n_rays, 0.0).sum().backward()
    out["composite"] = (sk.grad, sr.grad)

    sig, rgb, ts, *acc = cases.inference_blocks(gen, n_rays=16)
    ref = [a.clone() for a in acc]
    composite_step(sig, rgb, ts, 0.02, *acc)
    composite_step_torch(sig, rgb, ts, 0.02, *ref, 1e-3)
    out["composite_step"] = (acc[1], ref[1])

    density, new = torch.rand(8, 8, 8, generator=gen), torch.rand(8, 8, 8, generator=gen) - 0.3
    ref_density = density.clone()
    out["update_occupancy"] = (update_occupancy_op(density, new, 0.9, 0.5),
                               update_occupancy_torch(ref_density, new, 0.9, 0.5))
    return out


def assert_same(results: dict[str, tuple[object, object]]) -> None:
    for op, (got, want) in results.items():
        assert isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)
        assert selftest.rel_err_finite(got, want) < 1e-5, op


# ----------------------------------------------------------------------------------------------- healthy


def test_healthy_fake_passes_and_serves_every_op(warnings_log):
    fake = FakeExt()
    with backend.use_extension(fake, device_type="cpu") as entry:
        assert entry.results is None
        results = run_all_ops(torch.Generator().manual_seed(1))
        assert entry.results is not None and all(c.passed for c in entry.results.values())
        assert set(entry.results) == set(backend.OPS)
        first = sum(fake.calls.values())
        assert_same(run_all_ops(torch.Generator().manual_seed(1)))
        # the self-test ran once; the second round called each public op's kernels once more
        assert sum(fake.calls.values()) > first and all(fake.calls[f] > 1 for f in FUNCTION_OP)
        assert_same(results)
    assert warnings_log == []


def test_kernel_bodies_pass_the_self_test(host_ext):  # noqa: F811
    """The CPU-compiled kernel bodies pass with the self-test's own inputs (no flaky threshold cases)."""
    results = selftest.run_self_test(host_ext, torch.device("cpu"))
    assert all(c.passed for c in results.values()), results


# ----------------------------------------------------------------------------------------------- faulty


@pytest.mark.parametrize("function", list(FUNCTION_OP))
def test_nudged_output_is_caught_and_only_that_op_falls_back(function, warnings_log):
    fake = FakeExt(fault=(function, "nudge"))
    bad_op = FUNCTION_OP[function]
    with backend.use_extension(fake, device_type="cpu") as entry:
        results = run_all_ops(torch.Generator().manual_seed(2))
        checks = entry.results
        assert checks is not None
        assert [op for op, c in checks.items() if not c.passed] == [bad_op]
        assert "err" in checks[bad_op].detail or "differs" in checks[bad_op].detail
        assert_same(results)  # the public ops still give the reference results
        calls = Counter(fake.calls)
        run_all_ops(torch.Generator().manual_seed(3))
        used = {f for f in FUNCTION_OP if fake.calls[f] > calls[f]}
    assert not used & {f for f, op in FUNCTION_OP.items() if op == bad_op}, "the failed op still used the kernel"
    assert {FUNCTION_OP[f] for f in used} == set(backend.OPS) - {bad_op}
    assert len(warnings_log) == 1 and bad_op in warnings_log[0] and "PyTorch reference" in warnings_log[0]


def test_cuda_error_is_caught(warnings_log):
    fake = FakeExt(fault=("march_rays_train", "raise"))
    with backend.use_extension(fake, device_type="cpu") as entry:
        assert_same(run_all_ops(torch.Generator().manual_seed(4)))
        assert entry.results is not None
        failed = {op: c.detail for op, c in entry.results.items() if not c.passed}
    assert failed == {"march_rays": f"RuntimeError: {CUDA_ERROR}"}
    assert len(warnings_log) == 1 and "march_rays" in warnings_log[0] and CUDA_ERROR in warnings_log[0]


def test_forced_cuda_turns_a_failed_self_test_into_an_error(monkeypatch, warnings_log):
    monkeypatch.setenv("THG_NERF_BACKEND", "cuda")
    x = torch.rand(8, 3)
    layout = cases.LAYOUTS[0]
    offsets, res = layout.tensors(torch.device("cpu"))
    table = cases.hash_table(layout, torch.Generator().manual_seed(5))
    with backend.use_extension(FakeExt(fault=("composite_backward", "nudge")), device_type="cpu"):
        for _ in range(2):  # every call, not only the one that ran the self-test
            with pytest.raises(ThgError, match=r"THG_NERF_BACKEND=cuda .*self-test failed for composite \("):
                hash_encode(x, table, offsets, res)
    healthy = FakeExt()
    with backend.use_extension(healthy, device_type="cpu"):
        out = hash_encode(x, table, offsets, res)
    assert torch.equal(out, hash_encode_torch(x, table, offsets, res)) and healthy.calls["hash_encode_forward"] > 0
    assert warnings_log == []


def test_self_test_off_uses_kernels_unchecked():
    fake = FakeExt(fault=("occupancy_update", "nudge"))
    with backend.use_extension(fake, device_type="cpu", self_test=False) as entry:
        density, new = torch.full((4, 4, 4), 0.2), torch.full((4, 4, 4), -1.0)
        occ = update_occupancy_op(density, new, 0.9, 0.5)
        assert entry.results is None and fake.calls == Counter({"occupancy_update": 1})
    assert bool(occ.view(-1)[0]) and not bool(occ.view(-1)[1:].any())  # the nudged output came through


def test_self_test_runs_in_inference_mode_autocast_and_keeps_the_rng():
    """First use may come while rendering (inference mode: tensors made there cannot be saved for backward) or
    inside training's bfloat16 autocast (which does not change these CPU ops; the guard is for CUDA)."""
    state = torch.random.get_rng_state()
    with backend.use_extension(FakeExt(), device_type="cpu") as entry, torch.inference_mode(), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        s = cases.march_scene(torch.Generator().manual_seed(6), n_rays=16)
        march_step(s.rays_o, s.rays_d, s.t_near, s.t_far, s.occ, s.aabb, s.step, 2)
        assert entry.results is not None and all(c.passed for c in entry.results.values())
    assert torch.equal(torch.random.get_rng_state(), state)


# ----------------------------------------------------------------------------------------------- info


def test_info_lists_per_op_state(capsys):
    with backend.use_extension(FakeExt(fault=("composite_inference", "raise")), device_type="cpu"):
        assert main(["info"]) == 0
        before = capsys.readouterr().out
        assert main(["info", "--self-test", "--json"]) == 1  # a failed op: non-zero for scripts
        import json

        ops = json.loads(capsys.readouterr().out)["backends"]["ops"]
        assert main(["info"]) == 0
        after = capsys.readouterr().out
    for op in backend.OPS:
        assert f"  {op} " in before and f"  {op} " in after
    assert "not run yet" in before
    assert ops["composite_step"]["backend"] == "torch (fallback)"
    assert ops["composite_step"]["self_test"].startswith("FAILED (RuntimeError: CUDA error")
    assert all(ops[op]["backend"] == "cuda" and ops[op]["self_test"].startswith("passed")
               for op in backend.OPS if op != "composite_step")
    line = next(ln for ln in after.splitlines() if ln.startswith("  composite_step "))
    assert "torch (fallback)" in line and "FAILED" in line


def test_info_without_kernels(capsys, monkeypatch):
    monkeypatch.setenv("THG_NERF_BACKEND", "torch")
    with backend.use_extension(FakeExt(), device_type="cpu"):
        assert main(["info", "--json"]) == 0
    import json

    ops = json.loads(capsys.readouterr().out)["backends"]["ops"]
    assert all(v == {"backend": "torch", "self_test": "not run (THG_NERF_BACKEND=torch)"} for v in ops.values())
