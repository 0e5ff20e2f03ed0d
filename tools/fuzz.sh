#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan) into build-fuzz/ and runs
# each for a while on a copy of its checked-in corpus (tests/fuzz/corpus/<target>/).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, every target)
#
# A crash, leak, timeout or sanitizer report fails the run and leaves the input in
# build-fuzz/artifacts/; add it to the target's corpus as crash-<what> once fixed, and a unit
# test reproducing it (docs/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
# clang, libFuzzer and clang's OpenMP come with the other dependencies.
tools/install_deps.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_C_FLAGS="-O1 -g1" -DCMAKE_CXX_FLAGS="-O1 -g1" -DTOME_FUZZ=ON \
  -DTOME_SANITIZE="address;undefined" -DTOME_CUDA=OFF -DTOME_BUILD_BENCH=OFF >/dev/null
ninja -C build-fuzz -j "${TOME_SANITIZE_JOBS:-$(nproc)}" tome_fuzzers
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=($(cd tests/fuzz/corpus && ls))
fi
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p build-fuzz/artifacts
for target in "${targets[@]}"; do
  work="build-fuzz/corpus/$target"
  mkdir -p "$work"
  echo "fuzz: $target for ${seconds}s"
  log="build-fuzz/artifacts/$target.log"
  rc=0
  build-fuzz/tests/fuzz/"$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
    -print_final_stats=1 -artifact_prefix=build-fuzz/artifacts/"$target"- \
    "$work" tests/fuzz/corpus/"$target" >"$log" 2>&1 || rc=$?
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
  if ((rc != 0)); then
    tail -n 60 "$log"
    echo "fuzz: $target FAILED (exit $rc; input in build-fuzz/artifacts/)"
    exit 1
  fi
done
