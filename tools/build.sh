#!/usr/bin/env bash
# Configures and builds Tome into ./build (Release, Ninja, ccache). Extra arguments go to
# cmake, e.g. tools/build.sh -DTOME_CUDA=OFF.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C build "${TOME_BUILD_TARGETS:-all}"
