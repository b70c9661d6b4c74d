#!/usr/bin/env bash
# The project's GPU checks in one run, for a machine with a CUDA device (not yet run on one; sizes are
# chosen to fit a few minutes of an H100):
#
#   bash tools/gpu_check.sh OUT_DIR
#
# 1. the GPU-marked tests (device-side inputs without synchronisation, bf16 training, autocast
#    tolerances, half-precision pseudo-labels);
# 2. benchmark.py for the full model at 192x640, batch 12 (Table 2 of the paper's supplementary material setting): the fast
#    path (bf16 autocast, channels_last) beside the straightforward one and the defaults, on generated KITTI-size
#    PNG frames, then with the fast path reading a 192x640 JPEG cache of them (tools/prepare_kitti.py).
# Everything goes to OUT_DIR: the GPU's name, the test log, the benchmark tables and JSON reports.
# A folder .whl of wheels (tensorboardX where the machine lacks it) is installed first, if present.
# Sizes can be changed through the environment: DEVICE, FRAMES, WORKERS, STEPS, HEIGHT, WIDTH, BATCH.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-gpu_check}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
FRAMES=${FRAMES:-200}
WORKERS=${WORKERS:-$(( $(nproc) > 12 ? 12 : $(nproc) ))}
STEPS=${STEPS:-20}
HEIGHT=${HEIGHT:-192}
WIDTH=${WIDTH:-640}
BATCH=${BATCH:-12}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } \
    | tee "$OUT_DIR/machine.txt"

status=0
if [ "$DEVICE" = cuda ]; then
    "$PY" -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tee "$OUT_DIR/gpu_tests.log" || status=1
fi

DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
FAST_OPTIONS=()
[ "$DEVICE" = cuda ] && FAST_OPTIONS=(--amp bf16 --channels_last)
COMMON=(--configs full --height "$HEIGHT" --width "$WIDTH" --batch_size "$BATCH" --num_workers "$WORKERS"
        --steps "$STEPS" --warmup 3 --input_batches "$STEPS" --inference_runs 50 --baseline --device "$DEVICE"
        "${FAST_OPTIONS[@]}")
"$PY" -m tools.benchmark --make_data "$DATA/png" --make_frames "$FRAMES" "${COMMON[@]}" \
    --output "$OUT_DIR/bench_png.json" 2>&1 | tee "$OUT_DIR/bench_png.log" || status=1
"$PY" -m tools.prepare_kitti --data_path "$DATA/png/kitti_data" --output_path "$DATA/cache" --ext jpg \
    --height "$HEIGHT" --width "$WIDTH" --num_workers "$WORKERS" 2>&1 | tail -n 1 | tee "$OUT_DIR/prepare.log" || status=1
"$PY" -m tools.benchmark --data_path "$DATA/png/kitti_data" --split "$DATA/png/split" --fast_data_path "$DATA/cache" \
    --fast_img_ext jpg "${COMMON[@]}" --output "$OUT_DIR/bench_cache.json" 2>&1 | tee "$OUT_DIR/bench_cache.log" || status=1
echo "gpu_check: exit $status; results in $OUT_DIR"
exit $status
