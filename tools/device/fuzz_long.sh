#!/usr/bin/env bash
# The long fuzz run (docs/RELIABILITY.md) on the device machine's CPU cores. The fuzzers are
# built here (tools/fuzz.sh builds build-fuzz/) and carried there with their shared
# libraries as one archive, since the device has no clang or Debian libraries:
#
#   tools/device/fuzz_long.sh --stage          # here: writes .fuzzdev/fuzzdev.tar.xz
#   run(carry=[".fuzzdev"], command="tools/device/fuzz_long.sh SECONDS WORKERS TARGET...")
#
# Each target runs for SECONDS with WORKERS libFuzzer processes (-fork), all targets at
# once, on a copy of its checked-in corpus. Logs, the grown corpora and any crash inputs go
# to $OUT/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ "${1:-}" == "--stage" ]]; then
  stage="$(mktemp -d)"
  mkdir -p "$stage/bin" "$stage/lib"
  for f in build-fuzz/tests/fuzz/*_fuzz; do strip -o "$stage/bin/$(basename "$f")" "$f"; done
  # Every library the fuzzers need except the C and C++ runtimes, which the device has.
  for f in build-fuzz/tests/fuzz/*_fuzz; do ldd "$f"; done | awk '/=>/ {print $3}' | sort -u |
    grep -v -E 'lib(c|m|pthread|dl|rt|stdc\+\+|gcc_s)\.so|ld-linux' |
    xargs -I{} cp -L {} "$stage/lib/"
  mkdir -p .fuzzdev
  tar -C "$stage" -cf - bin lib | xz -T0 -6 >.fuzzdev/fuzzdev.tar.xz
  rm -rf "$stage"
  du -sh .fuzzdev/fuzzdev.tar.xz
  exit 0
fi
seconds="$1" workers="$2"
shift 2
work=/tmp/tome_fuzz
rm -rf "$work" && mkdir -p "$work" "$OUT/fuzz"
xz -dc .fuzzdev/fuzzdev.tar.xz | tar -C "$work" -xf -
export LD_LIBRARY_PATH="$work/lib"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
nproc
for target in "$@"; do
  mkdir -p "$OUT/fuzz/$target/corpus" "$OUT/fuzz/$target/crashes"
  (
    rc=0
    "$work/bin/$target" -fork="$workers" -max_total_time="$seconds" -timeout=20 \
      -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$OUT/fuzz/$target/crashes/" "$OUT/fuzz/$target/corpus" \
      "tests/fuzz/corpus/$target" >"$OUT/fuzz/$target.log" 2>&1 || rc=$?
    echo "$target exit $rc" >>"$OUT/fuzz/summary.txt"
  ) &
done
wait
cat "$OUT/fuzz/summary.txt"
for target in "$@"; do
  echo "== $target: $(ls "$OUT/fuzz/$target/corpus" | wc -l) corpus files"
  grep -E "^#[0-9]+|DONE|cov:|stat::" "$OUT/fuzz/$target.log" | tail -n 3
done
