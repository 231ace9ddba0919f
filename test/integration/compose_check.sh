#!/usr/bin/env bash
# deploy/docker/compose.yaml's wiring without a container engine: runs its
# Mosquitto command (dynsec initialised from MOSQUITTO_ADMIN_PASSWORD) with
# deploy/docker/mosquitto.conf and its broker arguments with the real
# binaries (container paths and host names mapped to this machine), then
# bootstraps a device and checks that it was registered in Mosquitto, and
# that /metrics is on the metrics listener, not on the public HTTP port.
# Usage: compose_check.sh SOURCE_DIR BROKER CLI AGENT
set -uo pipefail
src=$1 broker=$2 cli=$3 agent=$4
tmp=$(mktemp -d)
# Run as root, mosquitto drops to its own user, as in its image: give that
# user the data directory the way the image does.
if [[ $(id -u) == 0 ]] && id mosquitto >/dev/null 2>&1; then
  chown mosquitto:mosquitto "$tmp"
fi
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL $*"; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MOSQUITTO_ADMIN_PASSWORD=compose-check-pw

# The Mosquitto service: its config and command, paths mapped.
sed -e "s#/usr/lib/mosquitto_dynamic_security.so#/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so#" \
  -e "s#/mosquitto/data/#$tmp/#g" -e "s#^listener 1883 0.0.0.0#listener $port 127.0.0.1#" \
  "$src/deploy/docker/mosquitto.conf" >"$tmp/mosquitto.conf"
mosq_cmd=$(python3 - "$src/deploy/docker/compose.yaml" "$tmp" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))["services"]["mosquitto"]["command"]
assert c[:2] == ["sh", "-c"], c
print(c[2].replace("$$", "$").replace("/mosquitto/data/", sys.argv[2] + "/")
      .replace("/mosquitto/config/mosquitto.conf", sys.argv[2] + "/mosquitto.conf")
      .replace("exec mosquitto ", "exec /usr/sbin/mosquitto "))
PY
) || fail "compose.yaml: no mosquitto command"
PATH=$PATH:/usr/sbin sh -c "$mosq_cmd" >"$tmp/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  mosquitto_ctrl -h 127.0.0.1 -p "$port" -u admin -P "$MOSQUITTO_ADMIN_PASSWORD" \
    dynsec listClients >/dev/null 2>&1 && break
  sleep 0.1
done
mosquitto_ctrl -h 127.0.0.1 -p "$port" -u admin -P "$MOSQUITTO_ADMIN_PASSWORD" \
  dynsec listClients 2>/dev/null | grep -q '^admin$' ||
  fail "mosquitto with mosquitto.conf: dynsec admin not usable ($(cat "$tmp/mosquitto.log"))"
echo "ok   mosquitto.conf + dynsec init: the admin client answers"

# The broker service's arguments: defaults filled in, mosquitto:1883 mapped.
mapfile -t args < <(python3 - "$src/deploy/docker/compose.yaml" "$port" <<'PY'
import re, sys, yaml
args = yaml.safe_load(open(sys.argv[1]))["services"]["broker"]["command"]
for a in args:
    a = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", a)
    a = a.replace("mosquitto:1883", "127.0.0.1:" + sys.argv[2])
    a = a.replace("0.0.0.0:9100", "127.0.0.1:0")
    print(a)
PY
)
((${#args[@]} > 0)) || fail "compose.yaml: no broker command"
"$broker" --data-dir "$tmp/b" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  "${args[@]}" 2>"$tmp/broker.log" &
pids+=($!)
for _ in $(seq 200); do [[ -s $tmp/b/listen-address ]] && break; sleep 0.1; done
[[ -s $tmp/b/listen-address ]] || fail "broker with compose's arguments did not start: $(cat "$tmp/broker.log")"
echo "ok   the broker starts with compose's arguments"

imsi=001010000009901
k=465b5ce8b199b49faa5f0a2ee238a6bc
opc=cd63cb71954a9f4e48a5994e37a02baf
printf 'imsi,ki,opc\n%s,%s,%s\n' "$imsi" "$k" "$opc" >"$tmp/sims.csv"
"$cli" --data-dir "$tmp/b" subscribers import "$tmp/sims.csv" >/dev/null ||
  fail "import"
printf '{"imsi": "%s", "k": "%s", "opc": "%s"}\n' "$imsi" "$k" "$opc" >"$tmp/sim.json"
"$agent" bootstrap --broker "$(cat "$tmp/b/listen-address")" --sim "soft:$tmp/sim.json" \
  --out "$tmp/dev" --broker-ca "$tmp/b/ca.pem" --wait-registered=30s >/dev/null 2>"$tmp/agent.log" ||
  fail "bootstrap: $(cat "$tmp/agent.log")"
mosquitto_ctrl -h 127.0.0.1 -p "$port" -u admin -P "$MOSQUITTO_ADMIN_PASSWORD" \
  dynsec getClient "$imsi" >/dev/null 2>&1 || fail "device $imsi not registered in Mosquitto"
echo "ok   a bootstrapped device is registered in Mosquitto"

http=$(cat "$tmp/b/http-address")
metrics=$(cat "$tmp/b/metrics-address" 2>/dev/null)
[[ -n $metrics ]] || fail "no metrics listener"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$http/metrics")
[[ $code == 404 ]] || fail "/metrics on the public HTTP port answered $code"
curl -sf "http://$metrics/metrics" | grep -q '^simprov_bootstraps_total' ||
  fail "/metrics missing on the metrics listener"
echo "ok   /metrics only on the metrics listener"
