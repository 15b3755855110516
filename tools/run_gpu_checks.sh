#!/usr/bin/env bash
# Every GPU check in one run (<= 8 minutes on one H100/H200): build, CUDA tests, compute-sanitizer, kernel
# benchmarks, a timed training of a preprocessed dataset, its eval, render frames/s; prints every figure at the
# end and writes gpu_checks.json (see tools/gpu_checks.py for the steps and options). Exit 1 if any step failed.
#   bash tools/run_gpu_checks.sh --data DATASET_DIR [--out DIR] [--max-minutes 2] [--wheels DIR]
#   bash tools/run_gpu_checks.sh --dry-run --out /tmp/gpu_dry     # no GPU needed: what CI runs
# Env: PYTHON (default: .venv/bin/python if its torch sees a GPU, else python3; with --dry-run .venv/bin/python
# when present), MAX_JOBS (parallel nvcc jobs, default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ]; then
        case " $* " in
            *" --dry-run "*) PYTHON=.venv/bin/python ;;
            *) if .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
                   PYTHON=.venv/bin/python
               fi ;;
        esac
    fi
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$PYTHON" tools/gpu_checks.py "$@"
