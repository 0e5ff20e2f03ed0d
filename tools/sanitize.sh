#!/usr/bin/env bash
# CI, after tools/test.sh: the test suite under AddressSanitizer + UndefinedBehaviorSanitizer,
# the concurrency tests under ThreadSanitizer, then every fuzz target for a short run
# (tools/fuzz.sh). Any sanitizer report fails the run. docs/RELIABILITY.md lists what runs
# and how long it takes.
#
#   tools/sanitize.sh [asan|tsan|fuzz|all|ci]      (default all)
#
# `ci` is the subset CI runs after tools/test.sh, sized for its time limit: ASan + UBSan over
# the kernel, engine, storage, CLI and fuzz-replay tests (everything but the gRPC server) and
# TSan over the store's tests, then every fuzz target for 15 s. The server's tests under both
# sanitizers run in `asan`/`tsan`.
#
# Builds go to build-asan/, build-tsan/ and build-fuzz/ (CPU only, -O1, no benchmarks).
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
jobs="${TOME_SANITIZE_JOBS:-$(nproc)}"
supp="$PWD/tools/sanitizers"

configure() {  # configure DIR SANITIZERS [cmake args...]
  local dir="$1" sanitizers="$2"
  shift 2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_C_FLAGS="-O1 -g1" \
    -DCMAKE_CXX_FLAGS="-O1 -g1" -DTOME_SANITIZE="$sanitizers" -DTOME_CUDA=OFF \
    -DTOME_BUILD_BENCH=OFF "$@" >/dev/null
}

timed() {  # timed NAME COMMAND...: runs it and prints how long it took
  local name="$1" start=$SECONDS
  shift
  "$@"
  echo "sanitize: $name took $((SECONDS - start)) s"
}

# Reports are fatal and carry stacks; third-party suppressions are in tools/sanitizers/.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"

asan() {
  configure build-asan "address;undefined"
  ninja -C build-asan -j "$jobs"
  # Everything but the GPU tests, the slow 100-kill crash test, and the two Python-only
  # suites (the PyTorch reference's self-test and its parity with the engine's numbers).
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE "gpu|slow" \
    -E "reference_self_test|ReferenceParity"
}

tsan() {
  configure build-tsan thread
  # The tests whose code runs on several threads: the server (scheduler, ingestion,
  # sessions, streams, quotas) and the store (concurrent appends and commits).
  ninja -C build-tsan -j "$jobs" services_test storage_test cluster_test tomed kernels_test block_cache_test
  # One OpenMP thread: libgomp is not TSan-instrumented, so its barriers would look like
  # missing synchronisation inside every parallel kernel. Tome's own threads stay many.
  OMP_NUM_THREADS=1 taskset -c 0 ctest --test-dir build-tsan --output-on-failure -j 1 \
    -R "^(DocumentServiceTest|QueryServiceTest|SessionsTest|SchedulingTest|TenancyTest|IncrementalTest|MetricsTest|UsageTrackerTest|LimitsTest|FaultsTest|TlsTest|ContextStoreTest|WorkPoolTest|BlockCacheTest|SlotPoolTest|PendingLoadTest|StagingPoolTest|ClusterTest)\."
}

# CI's subset: the targets that need no gRPC server code (build time), each fully sanitized.
ci() {
  configure build-asan "address;undefined"
  ninja -C build-asan -j "$jobs" kernels_test engine_test block_cache_test storage_test \
    tome_cli_test fuzz_regression_test tome_fuzzers
  # The unit label: every test outside the server and process tests.
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -L unit -LE "gpu|slow" \
    -E "reference_self_test|ReferenceParity"
  configure build-tsan thread
  ninja -C build-tsan -j "$jobs" storage_test kernels_test block_cache_test engine_test
  OMP_NUM_THREADS=1 ctest --test-dir build-tsan --output-on-failure -j 1 -R "^(ContextStoreTest|WorkPoolTest|LifecycleTest|FaultTest|BlockCacheTest|SlotPoolTest|PendingLoadTest|StagingPoolTest)\."
  # The engine on one CPU, hence one OpenMP thread (see tsan above): it sets its thread count
  # from the CPUs it may use, which OMP_NUM_THREADS alone does not lower.
  OMP_NUM_THREADS=1 taskset -c 0 ctest --test-dir build-tsan --output-on-failure -j 1 -R "^OnDemandTest\."
  tools/fuzz.sh 15
}

case "$stage" in
  ci) timed ci ci ;;
  asan) timed asan asan ;;
  tsan) timed tsan tsan ;;
  fuzz) timed fuzz tools/fuzz.sh ;;
  all)
    timed asan asan
    timed tsan tsan
    timed fuzz tools/fuzz.sh
    ;;
  *) echo "usage: $0 [asan|tsan|fuzz|all|ci]" >&2; exit 2 ;;
esac
