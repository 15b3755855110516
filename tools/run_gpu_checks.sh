#!/usr/bin/env bash
# What a session with a GPU runs: build the CUDA extension (torch JIT, the path users get), run the ops tests
# (CUDA vs references, host harness, references), one compute-sanitizer memcheck run over tools/gpu_smoke_ops.py,
# and the kernel benchmark (extra arguments go to tools/bench_kernels.py). Stops at the first failure.
# Env: PYTHON (default: .venv/bin/python if its torch sees a GPU, else python3), MAX_JOBS (parallel nvcc jobs).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" \
        2>/dev/null; then
        PYTHON=.venv/bin/python
    fi
fi
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else
    'torch.cuda.is_available() is False for $PYTHON: run this on a GPU machine with a CUDA build of torch')"
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

echo "== build (JIT, cached under ~/.cache/torch_extensions)"
start=$(date +%s)
"$PYTHON" - <<'PY'
import logging
import sys

logging.basicConfig(level=logging.INFO)
from thg_nerf.ops import _build, backend

try:
    module = _build.jit_load() if not backend.cuda_extension_built() else backend.load_extension()
except Exception as e:  # show the compiler's error, not the backend's fallback warning
    sys.exit(f"build failed: {e}")
print("extension:", module.__name__, module.__file__)
PY
echo "built in $(( $(date +%s) - start )) s"

echo "== tests"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda_ops.py tests/test_cuda_host.py tests/test_ops.py

echo "== compute-sanitizer memcheck"
if command -v compute-sanitizer >/dev/null 2>&1; then
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
        "$PYTHON" tools/gpu_smoke_ops.py
else
    echo "compute-sanitizer not found: SKIPPED"
fi

echo "== benchmark"
"$PYTHON" tools/bench_kernels.py "$@"
