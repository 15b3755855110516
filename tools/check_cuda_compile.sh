#!/usr/bin/env bash
# Compile-check the CUDA extension without a GPU or a CUDA build of torch:
#   1. every cuda_ext/*.cu with plain nvcc, with the defines torch adds (no implicit half conversions), as C++17
#      and C++20, warnings as errors;
#   2. the CPU harness cuda_ext/host/harness.cpp with g++ (warnings as errors);
#   3. cuda_ext/bindings.cpp syntax-checked with g++ against the torch headers of $PYTHON (default .venv; a CPU
#      torch is enough) plus the CUDA include dir; skipped with a message when that torch is not importable.
# Env: NVCC (default nvcc), ARCH (default sm_90), PYTHON (default .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
NVCC=${NVCC:-nvcc}
ARCH=${ARCH:-sm_90}
TORCH_NVCC_DEFINES=(-D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ -D__CUDA_NO_BFLOAT16_CONVERSIONS__
                    -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr)
WARN=(-Wall -Wextra -Werror)

files=(cuda_ext/*.cu)
if [ ${#files[@]} -eq 0 ]; then echo "no .cu files in cuda_ext/"; exit 1; fi
for std in c++17 c++20; do
    pids=()
    for f in "${files[@]}"; do
        "$NVCC" -std=$std "${TORCH_NVCC_DEFINES[@]}" -arch="$ARCH" -Xcompiler -Wall,-Wextra --Werror all-warnings \
            -c "$f" -o /dev/null &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { echo "nvcc FAILED ($std): ${files[$i]}"; exit 1; }
    done
    echo "nvcc ok ($std, $ARCH): ${files[*]}"
done

g++ -std=c++17 "${WARN[@]}" -ffp-contract=off -fsyntax-only cuda_ext/host/harness.cpp
echo "g++ ok: cuda_ext/host/harness.cpp"

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if ! torch_info=$("$PYTHON" - <<'EOF'
import inspect
import sysconfig

import torch.utils.cpp_extension as ext

print("c++20" if "'-std=c++20'" in inspect.getsource(ext) else "c++17")
print(sysconfig.get_paths()["include"])
for path in ext.include_paths():
    print(path)
EOF
); then
    echo "SKIPPED bindings.cpp check: $PYTHON cannot import torch.utils.cpp_extension"
    exit 0
fi
mapfile -t info <<<"$torch_info"
std=${info[0]}
includes=()
for path in "${info[@]:1}"; do includes+=(-isystem "$path"); done

cuda_inc=""
for dir in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$dir" ] && [ -f "$dir/include/cuda_runtime_api.h" ]; then cuda_inc="$dir/include"; break; fi
done
if [ -z "$cuda_inc" ]; then
    echo "SKIPPED bindings.cpp check: no CUDA include dir (set CUDA_HOME)"
    exit 0
fi
includes+=(-isystem "$cuda_inc")

# CPU wheels of torch ship the c10/cuda headers but not the generated cuda_cmake_macros.h: stub it.
stub=$(mktemp -d)
trap 'rm -rf "$stub"' EXIT
torch_inc=${info[2]}
if [ ! -f "$torch_inc/c10/cuda/impl/cuda_cmake_macros.h" ]; then
    mkdir -p "$stub/c10/cuda/impl"
    echo "#pragma once" >"$stub/c10/cuda/impl/cuda_cmake_macros.h"
    includes+=(-isystem "$stub")
fi
g++ -std="$std" "${WARN[@]}" -fsyntax-only -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H \
    "${includes[@]}" cuda_ext/bindings.cpp
echo "g++ ok ($std, torch headers): cuda_ext/bindings.cpp"
