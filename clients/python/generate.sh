#!/bin/sh
# Generates the tome.v1 Python stubs into DIR (default: ./generated) with Debian's
# python3-grpc-tools. tome_client does this by itself on first import (into a cache
# directory); use this script to generate them ahead of time, then point
# TOME_CLIENT_STUBS_DIR at DIR.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/generated"}
mkdir -p "$out"
python3 -m grpc_tools.protoc -I"$here/../../proto" -I/usr/include \
  --python_out="$out" --grpc_python_out="$out" \
  "$here"/../../proto/tome/v1/admin.proto "$here"/../../proto/tome/v1/documents.proto \
  "$here"/../../proto/tome/v1/query.proto "$here"/../../proto/tome/v1/sessions.proto
echo "generated tome.v1 stubs in $out"
