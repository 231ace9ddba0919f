#!/usr/bin/env bash
# The scale benchmark of docs/BENCHMARKS.md ("A million subscribers"):
#  1. `simprov subscribers import` of 1,000,000 rows into a fresh broker,
#     RUNS times (wall time of the CLI, end to end, commit included);
#  2. bootstrap rate (simprov-bench) against a broker whose store holds
#     1,000 subscribers and one whose store holds 1,000,000, alternating,
#     RUNS times each.
# Usage: test/bench/scale_bench.sh BUILD_DIR WORK_DIR [RUNS] [DEVICES]
set -euo pipefail
B=${1:?usage: scale_bench.sh BUILD_DIR WORK_DIR [RUNS] [DEVICES]}
W=${2:?usage}
RUNS=${3:-3}
DEVICES=${4:-3000}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$W"
[[ -f $W/1m.csv ]] || "$here/gen_subscribers.py" 1000000 "$W/1m.csv"
[[ -f $W/1k.csv ]] || "$here/gen_subscribers.py" 1000 "$W/1k.csv"

start_broker() {  # DIR -> sets BP, ADDR
  "$B/broker/simprov-broker" --data-dir "$1" --listen 127.0.0.1:0 \
    --log-level warning 2>"$1.log" &
  BP=$!
  until [[ -f $1/listen-address ]]; do sleep 0.1; done
  ADDR=$(cat "$1/listen-address")
}

echo "== import of 1,000,000 subscribers"
for run in $(seq "$RUNS"); do
  d=$W/import-$run
  rm -rf "$d" "$d.log"
  start_broker "$d"
  s=$(date +%s.%N)
  "$B/broker/simprov" --data-dir "$d" subscribers import "$W/1m.csv"
  e=$(date +%s.%N)
  echo "import run $run: $(echo "$e - $s" | bc) s"
  kill "$BP"
  wait "$BP" || true
done

echo "== bootstrap rate, 1k vs 1M subscribers in the store"
small=$W/store-1k
large=$W/import-1  # already holds the million
rm -rf "$small" "$small.log"
start_broker "$small"
"$B/broker/simprov" --data-dir "$small" subscribers import "$W/1k.csv"
kill "$BP"
wait "$BP" || true
for run in $(seq "$RUNS"); do
  for d in "$small" "$large"; do
    start_broker "$d"
    echo "run $run store $(basename "$d"):"
    "$B/test/bench/simprov-bench" --broker "$ADDR" --data-dir "$d" \
      --devices "$DEVICES" --concurrency 32 --broker-pid "$BP" | tail -1
    kill "$BP"
    wait "$BP" || true
  done
done
