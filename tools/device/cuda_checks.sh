#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repository root: the CUDA backend tests
# (backend_ops_test: every op vs the CPU, whole model vs CPU), the 9.48B benchmark with
# random weights on the GPU and, when staged, the decode-kernel benchmark. Logs go to $OUT.
#
# Binaries: .devdeps/bin/{backend_ops_test,tome_bench} when they run there (built on the
# development machine with TOME_NATIVE=OFF TOME_BLAS=OFF and staged by
# `tools/device/stage_deps.sh --with-binaries build-cuda`), else a build from source with
# the staged dependencies.
#
#   [DEVDEPS_DIR=.devdeps-tp] tools/device/cuda_checks.sh [bench lengths, default 32768,131072]
#       [profile length, default the first bench length]
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
OUT="${OUT:-/tmp/tome-out}"
mkdir -p "$OUT"
lengths="${1:-32768,131072}"
profile_length="${2:-${lengths%%,*}}"
deps="${DEVDEPS_DIR:-.devdeps}"
prefix="$root/$deps/prefix"
export LD_LIBRARY_PATH="$prefix/lib/x86_64-linux-gnu:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

bin="$deps/bin"
if ! "$bin/backend_ops_test" --gtest_list_tests >/dev/null 2>&1; then
  echo "staged binaries do not run here; building from source"
  cmake -S . -B build-dev -G Ninja -DTOME_SERVICES=OFF -DTOME_CUDA=ON -DTOME_NATIVE=OFF \
    -DTOME_BLAS=OFF -DCMAKE_PREFIX_PATH="$prefix" \
    -DTOME_GTEST_SOURCE_DIR="$root/$deps/googletest" >"$OUT/configure.log" 2>&1 &&
    ninja -C build-dev backend_ops_test tome_bench >"$OUT/build.log" 2>&1 ||
    { tail -40 "$OUT/configure.log" "$OUT/build.log" 2>/dev/null; exit 1; }
  mkdir -p build-dev/bin
  bin=build-dev/bin
  cp build-dev/tests/kernels/backend_ops_test build-dev/tests/bench/tome_bench "$bin/"
fi

echo "== backend_ops_test"
timeout 100 "$bin/backend_ops_test" >"$OUT/backend_ops_test.log" 2>&1
echo "exit $?"
grep -E "^\[  (FAILED|PASSED|SKIPPED)|^\[==========\]| rel |SelectBlocks:|greedy|Failure|Expected|Which is|actual" \
  "$OUT/backend_ops_test.log" | head -90

echo "== tome_bench sala-9b (random weights on the GPU)"
timeout "${BENCH_SECONDS:-130}" "$bin/tome_bench" --device=cuda --preset=sala-9b \
  --random_weights --lengths="$lengths" --decode_tokens=16 --chunk=8192 2>&1 |
  tee "$OUT/bench.log"
if [[ -x "$bin/tome_decode_kernels_bench" ]]; then  # staged from a CUDA build
  echo "== decode kernels (a sparse layer's stage 1 and attention, the decode GEMVs)"
  timeout 60 "$bin/tome_decode_kernels_bench" --contexts=65536,1048576 2>&1 |
    tee "$OUT/decode_kernels.log"
fi
echo "== op profile at $profile_length (each op synchronised)"
TOME_CUDA_OP_TIMES=1 timeout "${PROFILE_SECONDS:-45}" "$bin/tome_bench" --device=cuda \
  --preset=sala-9b --random_weights --lengths="$profile_length" \
  --decode_tokens="${PROFILE_DECODE_TOKENS:-4}" \
  --chunk=8192 >"$OUT/profile.log" 2>&1
tail -25 "$OUT/profile.log"
