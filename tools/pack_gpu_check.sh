#!/usr/bin/env bash
# Bundle what tools/run_gpu_checks.sh needs on a GPU machine without internet into DEST (default .device_carry/,
# git-ignored, the folder to name in the device tool's `carry`):
#   DEST/data/NAME/  the dataset's files, without the decoded cache/ and preview.mp4
#   DEST/wheels/     imageio-ffmpeg 0.7.0 (thg-nerf's ffmpeg) for CPython 3.12, manylinux x86-64 (--no-wheels: none)
# and checks that DEST plus the git working tree that travels with it stay within 64 MiB.
#   bash tools/pack_gpu_check.sh data/macron [--dest .device_carry] [--no-wheels] [--python-version 3.12]
# Prints the command to run on the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=$((64 * 1024 * 1024))
DEST=.device_carry
WHEELS=1
PYVER=3.12
DATA=
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) DEST=$2; shift 2 ;;
        --no-wheels) WHEELS=0; shift ;;
        --python-version) PYVER=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        -*) echo "pack_gpu_check: unknown option $1" >&2; exit 2 ;;
        *) DATA=$1; shift ;;
    esac
done
if [ -z "$DATA" ] || [ ! -f "$DATA/meta.json" ]; then
    echo "pack_gpu_check: error: give a dataset directory written by 'thg-nerf preprocess' (with meta.json)" >&2
    exit 2
fi
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
NAME=$(basename "$(cd "$DATA" && pwd)")
rm -rf "$DEST/data"  # one dataset per pack
[ "$WHEELS" = 1 ] || rm -rf "$DEST/wheels"
mkdir -p "$DEST/data/$NAME"
find "$DATA" -maxdepth 1 -type f ! -name preview.mp4 -exec cp {} "$DEST/data/$NAME/" \;
if [ "$WHEELS" = 1 ]; then
    # 0.7.0: its wheel is 29 MiB; the 0.8 wheels (68 MiB) alone exceed what can travel
    rm -rf "$DEST/wheels"
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$DEST/wheels" "imageio-ffmpeg==0.7.0"
fi
carry=$(du -sb "$DEST" | cut -f1)
# what travels besides DEST: tracked and untracked-not-ignored files (du skips files deleted but not yet committed)
tree=$(git ls-files -z --cached --others --exclude-standard | { du -cb --files0-from=- 2>/dev/null || true; } | tail -1 | cut -f1)
total=$((carry + tree))
echo "packed $DEST: $((carry / 1024)) KiB (dataset $NAME: $(du -sk "$DEST/data/$NAME" | cut -f1) KiB) + working tree" \
     "$((tree / 1024)) KiB = $((total / 1024)) KiB of $((LIMIT / 1024)) KiB"
if [ "$total" -gt "$LIMIT" ]; then
    echo "pack_gpu_check: error: over 64 MiB; preprocess a shorter or smaller clip" >&2
    exit 1
fi
wheel_arg=
[ "$WHEELS" = 1 ] && wheel_arg=" --wheels $DEST/wheels"
echo "on the GPU machine (carry: $DEST):"
echo "  bash tools/run_gpu_checks.sh --data $DEST/data/$NAME$wheel_arg --out \$OUT"
