#!/usr/bin/env bash
# Stages the build dependencies that the GPU machine lacks (absl, GoogleTest sources,
# nlohmann-json) from this machine's Debian packages into .devdeps/ (git-ignored), so that a
# device run can build kernels/ + engine/ with TOME_SERVICES=OFF:
#
#   tools/device/stage_deps.sh            # here, once
#   run(carry=[".devdeps"], command="cmake -S . -B build-dev -G Ninja -DTOME_SERVICES=OFF \
#       -DCMAKE_PREFIX_PATH=$PWD/.devdeps/prefix -DTOME_GTEST_SOURCE_DIR=$PWD/.devdeps/googletest \
#       ... && export LD_LIBRARY_PATH=$PWD/.devdeps/prefix/lib/x86_64-linux-gnu ...")
#
# The prefix keeps the Debian layout so the packages' CMake configs find their files relative
# to themselves.
#
#   tools/device/stage_deps.sh --with-binaries build-cuda
# also copies that build's backend_ops_test, tome_bench, tome_on_demand_bench,
# tome_store_read_bench and tome_decode_kernels_bench (and libgomp, and RocksDB's libraries for a -DTOME_STORAGE=ON build) to .devdeps/bin, so
# a device run needs no build (tools/device/cuda_checks.sh uses them when they run there).
# backend_ops_test holds the tensor-parallel tests too (tp_cuda_test.cc; NCCL itself is the
# device's own libnccl.so.2, too large to carry). DEVDEPS_DIR=.devdeps-tp stages into another
# folder (so that two people's staged binaries do not overwrite each other).
#
#   tools/device/stage_deps.sh --with-binaries build-cuda-tp --archive
# also strips the binaries and packs them with their libraries into $DEVDEPS_DIR/bins.tar.xz
# (~4 MB for all five, against ~60 MB unpacked: a run carries at most 64 MiB with the tree):
#   run(carry=[".devdeps-tp/bins.tar.xz"], command="tar -xJf .devdeps-tp/bins.tar.xz -C \
#       .devdeps-tp && export LD_LIBRARY_PATH=$PWD/.devdeps-tp/prefix/lib/x86_64-linux-gnu ...")
set -euo pipefail
build=""
archive=0
if [[ "${1:-}" == "--with-binaries" ]]; then build="$2"; fi
if [[ "${3:-}" == "--archive" ]]; then archive=1; fi
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${DEVDEPS_DIR:-.devdeps}"
out="$root/$dir"
arch_lib=lib/x86_64-linux-gnu
rm -rf "$out"
mkdir -p "$out/prefix/include" "$out/prefix/$arch_lib/cmake" "$out/prefix/share/cmake"
cp -a /usr/include/absl "$out/prefix/include/"
cp -a /usr/$arch_lib/libabsl_*.so* "$out/prefix/$arch_lib/"
cp -a /usr/$arch_lib/cmake/absl "$out/prefix/$arch_lib/cmake/"
cp -a /usr/include/nlohmann "$out/prefix/include/"
cp -a /usr/share/cmake/nlohmann_json "$out/prefix/share/cmake/"
cp -a /usr/src/googletest "$out/googletest"
if [[ -n "$build" ]]; then
  mkdir -p "$out/bin"
  cp "$root/$build/tests/kernels/backend_ops_test" "$root/$build/tests/bench/tome_bench" \
    "$out/bin/"
  # Built only where needed (a TP-only build may lack them).
  for bench in tome_on_demand_bench tome_store_read_bench tome_decode_kernels_bench; do
    if [[ -f "$root/$build/tests/bench/$bench" ]]; then cp "$root/$build/tests/bench/$bench" "$out/bin/"; fi
  done
  cp -L /usr/$arch_lib/libgomp.so.1 "$out/prefix/$arch_lib/"
  # A build with storage/ (-DTOME_STORAGE=ON) links RocksDB (statically or not): the
  # libraries it and storage/ need that the GPU machine may lack (it has glibc, libstdc++ and
  # zlib), each copied when a staged binary names it.
  needed="$(ldd "$out"/bin/* 2>/dev/null | awk '{print $1}' | sort -u)"
  for lib in librocksdb.so.7.8 libgflags.so.2.2 libsnappy.so.1 liblz4.so.1 libzstd.so.1 \
    libbz2.so.1.0 libxxhash.so.0 liburing.so.2; do
    if grep -qx "$lib" <<<"$needed"; then cp -L "/usr/$arch_lib/$lib" "$out/prefix/$arch_lib/"; fi
  done
fi
if [[ -n "$build" && "$archive" == 1 ]]; then
  strip "$out"/bin/*
  tar -cJf "$out/bins.tar.xz" -C "$out" bin prefix/lib
  du -h "$out/bins.tar.xz"
fi
grep -qx "/$dir/" "$root/.git/info/exclude" 2>/dev/null ||
  { mkdir -p "$root/.git/info"; echo "/$dir/" >>"$root/.git/info/exclude"; }
du -sh "$out"
