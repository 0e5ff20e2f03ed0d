#!/usr/bin/env bash
# Issue 6's table in one device call (one GPU): tome_bench on the 9.48B shapes (random bf16
# weights) at every length, then the full-attention anchor of Qwen3-8B's shape in PyTorch
# (tests/bench/qwen3_anchor.py) on the same card. Logs go to $OUT. Binaries as tp_checks.sh:
#   DEVDEPS_DIR=.devdeps-tp tools/device/stage_deps.sh --with-binaries build-cuda-tp
#
#   tools/device/gpu_table.sh [lengths] [anchor lengths] [anchor max seconds per length]
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
OUT="${OUT:-/tmp/tome-out}"
mkdir -p "$OUT"
lengths="${1:-32768,65536,131072,262144,524288,1048576}"
anchor_lengths="${2:-32768,131072,262144,524288,1048576}"
anchor_seconds="${3:-120}"
deps="${DEVDEPS_DIR:-.devdeps-tp}"
export LD_LIBRARY_PATH="$root/$deps/prefix/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}:/usr/local/cuda/lib64"
start=$SECONDS
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader |
  tee "$OUT/gpu.txt"
echo "== anchor ($((SECONDS - start)) s)"
python3 tests/bench/qwen3_anchor.py --lengths "$anchor_lengths" --max_seconds "$anchor_seconds" \
  2>&1 | tee "$OUT/anchor.log"
echo "== tome_bench sala-9b ($((SECONDS - start)) s)"
stdbuf -oL "$deps/bin/tome_bench" --device=cuda --preset=sala-9b --random_weights \
  --lengths="$lengths" --decode_tokens=16 --chunk=8192 2>&1 | tee "$OUT/bench.log"
echo "== done ($((SECONDS - start)) s)"
