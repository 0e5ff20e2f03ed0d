#!/usr/bin/env bash
# Installs Tome's build and test dependencies from Debian 12 packages (run as root).
# Quiet and idempotent: packages already present are skipped by apt.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev libabsl-dev libopenblas-openmp-dev nlohmann-json3-dev libxxhash-dev libjemalloc-dev
  libsentencepiece-dev sentencepiece libgoogle-glog-dev libssl-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev libomp-14-dev
  python3 python3-numpy python3-torch python3-grpcio python3-grpc-tools python3-protobuf
  python3-sentencepiece
  etcd-server python3-yaml
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "tome: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
