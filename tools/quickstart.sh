#!/usr/bin/env bash
# README quick start, command 1: install, build, start tomed on the embedded default model
# with a data directory, ingest a sample text and ask a question through the tome CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh
data_dir="${TOME_DATA_DIR:-$PWD/tome-data}"
port_file="$(mktemp)"
mkdir -p "$data_dir"
build/services/tomed --data_dir="$data_dir" --listen=127.0.0.1:0 --port_file="$port_file" \
  --metrics_listen=127.0.0.1:0 2>"$data_dir.log" &
tomed_pid=$!
trap 'kill $tomed_pid 2>/dev/null; wait $tomed_pid 2>/dev/null; rm -f "$port_file"' EXIT
for _ in $(seq 600); do [ -s "$port_file" ] && break; sleep 0.1; done
[ -s "$port_file" ] || { echo "tomed did not start; see $data_dir.log" >&2; exit 1; }
server="127.0.0.1:$(cat "$port_file")"
echo "tomed is serving on $server (log: $data_dir.log, data: $data_dir)"
# The API keys tomed made on its first start (TOME_API_KEY, TOME_ADMIN_KEY).
set -a
. "$data_dir/bootstrap-credentials"
set +a
out="$(build/services/tome --server="$server" ingest tools/samples/lighthouse.txt --name=lighthouse)"
echo "$out"
doc="$(echo "$out" | sed -n 's/^document \([0-9]*\).*/\1/p' | head -n 1)"
question="${1:-What is the access code for Elias Varga?}"
echo
echo "Q: $question"
echo -n "A: "
build/services/tome --server="$server" ask "$doc" "$question" --max_tokens=48
