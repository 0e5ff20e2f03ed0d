#!/usr/bin/env bash
# Load test: builds tomed and tome_load_gen, starts tomed on the embedded default model with
# a fresh temporary data directory, runs tome_load_gen against it with this script's
# arguments, stops tomed and exits with the generator's status (0: no call failed).
#
#   tools/load.sh --clients=64 --duration_s=300 [--mix=ingest=1,append=2,ask=6,fork=1,delete=1]
#
# The report (Markdown tables) goes to stdout, progress and tomed's log location to stderr.
# TOME_LOAD_TOMED_FLAGS adds flags to tomed (e.g. "--state_cache_mb=256 --session_states=16").
# TOME_LOAD_KEEP=1 keeps the temporary directory (data/, tomed.log and, if tomed crashes, its
# core dump: tomed then runs there with `ulimit -c unlimited`).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
[ -f build/CMakeCache.txt ] || cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target tomed tome_load_gen >&2

work_dir="$(mktemp -d /tmp/tome-load.XXXXXX)"
data_dir="$work_dir/data"
port_file="$work_dir/port"
log="$work_dir/tomed.log"
tomed_pid=""
cleanup() {
  if [ -n "$tomed_pid" ]; then
    kill "$tomed_pid" 2>/dev/null || true
    wait "$tomed_pid" 2>/dev/null || true
  fi
  if [ "${TOME_LOAD_KEEP:-0}" = 1 ]; then
    echo "kept $work_dir (data/, tomed.log, core if tomed crashed)" >&2
  else
    rm -rf "$work_dir"
  fi
}
trap cleanup EXIT

tomed="$PWD/build/services/tomed"
# A free port for tomed's metrics page, which the generator samples beside tomed's RSS.
metrics_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(
  if [ "${TOME_LOAD_KEEP:-0}" = 1 ]; then ulimit -c unlimited; cd "$work_dir"; fi
  exec "$tomed" --data_dir="$data_dir" --listen=127.0.0.1:0 --port_file="$port_file" \
    --metrics_listen="127.0.0.1:$metrics_port" ${TOME_LOAD_TOMED_FLAGS:-} 2>"$log"
) &
tomed_pid=$!
for _ in $(seq 600); do
  [ -s "$port_file" ] && break
  kill -0 "$tomed_pid" 2>/dev/null || break
  sleep 0.1
done
if [ ! -s "$port_file" ]; then
  echo "tomed did not start:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
server="127.0.0.1:$(cat "$port_file")"
echo "tomed (pid $tomed_pid) serving on $server, data in $data_dir" >&2
# The tenant key tomed made on its first start (TOME_API_KEY, TOME_ADMIN_KEY).
set -a
. "$data_dir/bootstrap-credentials"
set +a

status=0
build/tests/bench/tome_load_gen --server="$server" --server_pid="$tomed_pid" \
  --metrics_port="$metrics_port" "$@" || status=$?

# tomed should still be alive after the load; its errors are worth seeing with the report.
if ! kill -0 "$tomed_pid" 2>/dev/null; then
  tomed_status=0
  wait "$tomed_pid" || tomed_status=$?
  tomed_pid=""
  how="with status $tomed_status"
  [ "$tomed_status" -gt 128 ] && how="$how (signal $((tomed_status - 128)): $(kill -l $((tomed_status - 128))))"
  echo "tomed exited during the run $how; its log ends:" >&2
  tail -n 20 "$log" >&2
  status=1
fi
errors="$(grep -c '^[EF]' "$log" || true)"
echo "tomed log: $errors error lines" >&2
[ "$errors" -gt 0 ] && grep '^[EF]' "$log" | head -n 20 >&2
exit "$status"
