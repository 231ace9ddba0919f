#!/usr/bin/env bash
# The broker with its keys in SoftHSM2 next to the same with software keys,
# interleaved: P-256 signs/s through simprov_pkcs11, then per round and mode
# a fresh broker (development CA; for "hsm" its root and issuing keys made in
# the token and --token-keys in the token), bootstraps/s (simprov-bench) and
# token issuances/s (simprov-token-grpc-bench, 8 threads).
# Usage: test/bench/hsm_bench.sh [BUILD_DIR] [ROUNDS]   (DEVICES=1000)
set -euo pipefail
B=${1:-build}
ROUNDS=${2:-3}
DEVICES=${DEVICES:-1000}
M=/usr/lib/softhsm/libsofthsm2.so
W=$(mktemp -d)
BP=
trap '[ -n "$BP" ] && kill $BP 2>/dev/null; rm -rf "$W"' EXIT
export SOFTHSM2_CONF=$W/softhsm2.conf
mkdir "$W/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
  "$W" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 87654321 >/dev/null
echo 1234 >"$W/pin"
chmod 600 "$W/pin"
for t in 1 2; do "$B/test/bench/simprov-pkcs11-bench" $M bench "$W/pin" $t 2; done

K=000102030405060708090a0b0c0d0e0f
O=0f0e0d0c0b0a09080706050403020100
run() { # MODE ROUND
  local D=$W/$1-$2 args=()
  if [ "$1" = hsm ]; then
    args=(--ca-key "pkcs11:token=bench;object=ca-$2" --token-keys pkcs11:token=bench
      --pkcs11-module $M --pkcs11-pin-file "$W/pin")
  fi
  "$B/broker/simprov-broker" --data-dir "$D" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --log-level warning "${args[@]}" 2>"$D.log" &
  BP=$!
  until [ -f "$D/listen-address" ]; do sleep 0.1; done
  local addr
  addr=$(cat "$D/listen-address")
  local boot
  boot=$("$B/test/bench/simprov-bench" --broker "$addr" --data-dir "$D" \
    --devices "$DEVICES" --concurrency 32 --broker-pid $BP 2>/dev/null | tail -1 |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f (%d errors)" % (d["per_second"], d["errors"]))')
  printf "imsi,ki,opc\n001019999999999,$K,$O\n" >"$D.csv"
  printf '{"imsi":"001019999999999","k":"%s","opc":"%s"}\n' $K $O >"$D.sim"
  "$B/broker/simprov" --data-dir "$D" subscribers import "$D.csv" >/dev/null
  "$B/agent/simprov-agent" bootstrap --broker "$addr" --sim "soft:$D.sim" --out "$D.dev" \
    >/dev/null 2>&1
  local tok
  tok=$("$B/test/bench/simprov-token-grpc-bench" --broker "$addr" --out "$D.dev" \
    --threads 8 --seconds 3 --broker-pid $BP | tail -1 |
    sed -E 's/.*IssueToken ([0-9]+)\/s.*/\1/')
  kill $BP
  wait $BP || true
  BP=
  echo "$1 round $2: bootstraps/s $boot, token issuances/s $tok"
}
for r in $(seq "$ROUNDS"); do
  run software "$r"
  run hsm "$r"
done
