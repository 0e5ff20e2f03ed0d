#!/usr/bin/env bash
# README quick start, command 2 (and CI): install, build, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh
ctest --test-dir build --output-on-failure -j2 ${TOME_CTEST_ARGS:-}
