#!/usr/bin/env bash
# Compile-check every CUDA translation unit in cuda_ext/ with plain nvcc (no GPU or CUDA torch needed).
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
files=(cuda_ext/*.cu)
if [ ${#files[@]} -eq 0 ]; then echo "no .cu files in cuda_ext/"; exit 0; fi
for f in "${files[@]}"; do
    nvcc -std=c++17 --expt-relaxed-constexpr -arch=sm_90 -Icuda_ext -c "$f" -o /dev/null
    echo "nvcc ok: $f"
done
