#!/usr/bin/env bash
# Issue 8's short evaluation through the service (ctest quick_eval): starts tomed on the
# shipped model with a fresh data directory, runs `tools/eval/eval.py --quick` over gRPC (one
# 8K-token held-out document, 12 questions, held-out units from
# tools/eval/quick_heldout.jsonl) and fails below its stated minimum (QUICK_MIN_ACCURACY).
#   quick_eval.sh TOMED_BINARY MODEL_DIR
set -euo pipefail
tomed="$1"
model="$2"
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [[ ! -f "$model/tokenizer.model" ]]; then
  echo "quick_eval: $model has no tokenizer.model (not the trained default model); skipping"
  exit 0
fi
"$tomed" --model="$model" --data_dir="$work/data" --listen=127.0.0.1:0 \
  --port_file="$work/port" --metrics_listen= >"$work/tomed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  [[ -s "$work/port" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/tomed.log"; echo "quick_eval: tomed exited"; exit 1; }
  sleep 0.1
done
[[ -s "$work/port" ]] || { echo "quick_eval: tomed did not start"; exit 1; }
export TOME_API_KEY
TOME_API_KEY="$(grep '^TOME_API_KEY=' "$work/data/bootstrap-credentials" | cut -d= -f2)"
/usr/bin/python3 "$root/tools/eval/eval.py" --server "127.0.0.1:$(cat "$work/port")" --quick \
  --data "$work/no-prepared-data" --tokenizer "$model/tokenizer.model"
