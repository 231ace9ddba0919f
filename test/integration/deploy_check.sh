#!/usr/bin/env bash
# Structural checks of deploy/ (no Docker engine and no hadolint package on
# the build machines): the Dockerfile is multi-stage on Debian 12, runs as a
# non-root user, declares the data dir a volume and health-checks /readyz;
# the compose file runs the broker and Mosquitto; the systemd unit verifies
# and its exposure stays low. Usage: test/integration/deploy_check.sh SOURCE_DIR
set -uo pipefail
src=${1:?usage: deploy_check.sh SOURCE_DIR}
fails=0
check() {  # check "what" command...
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}
has() { grep -Eq -- "$2" "$1"; }
lacks() { ! grep -Eq -- "$2" "$1"; }

df=$src/deploy/docker/Dockerfile
check "Dockerfile: build stage on bookworm" has "$df" '^FROM debian:bookworm AS build$'
check "Dockerfile: runtime stage on bookworm-slim" has "$df" '^FROM debian:bookworm-slim$'
check "Dockerfile: exactly two stages" test "$(grep -c '^FROM ' "$df")" -eq 2
check "Dockerfile: copies binaries from the build stage" has "$df" '^COPY --from=build '
check "Dockerfile: runs as a non-root user" has "$df" '^USER simprov$'
check "Dockerfile: USER is set after the last RUN" \
  test "$(grep -n '^USER ' "$df" | tail -1 | cut -d: -f1)" -gt "$(grep -n '^RUN ' "$df" | tail -1 | cut -d: -f1)"
check "Dockerfile: data dir is a volume" has "$df" '^VOLUME \["/var/lib/simprov"\]$'
check "Dockerfile: health check on /readyz" has "$df" '^HEALTHCHECK .*' 
check "Dockerfile: health check URL" has "$df" 'http://127.0.0.1:8080/readyz'
check "Dockerfile: entrypoint uses the volume as data dir" has "$df" '"--data-dir", "/var/lib/simprov"'
check "Dockerfile: HTTP listens where the health check looks" has "$df" '"--http-listen", "0.0.0.0:8080"'
check "Dockerfile: apt lists are cleaned" test "$(grep -c 'rm -rf /var/lib/apt/lists' "$df")" -eq 2
check "Dockerfile: no recommends" test "$(grep -c -- '--no-install-recommends' "$df")" -eq 2
check "Dockerfile: no :latest base" lacks "$df" '^FROM [^ ]*:latest'
check "Dockerfile: exec-form ENTRYPOINT" has "$df" '^ENTRYPOINT \['
check "Dockerfile: build packages from the shared list" has "$df" '^COPY deploy/debian/build-packages.txt '
check "Dockerfile: runtime packages from the shared list" has "$df" '^COPY deploy/debian/runtime-packages.txt '
check "Dockerfile: installs the build list" has "$df" "sed 's/#.\*//' /tmp/build-packages.txt"
check "Dockerfile: installs the runtime list" has "$df" "sed 's/#.\*//' /tmp/runtime-packages.txt"
check "scripts/deps: reads the same lists" has "$src/scripts/deps" 'deploy/debian'

cf=$src/deploy/docker/compose.yaml
check "compose: broker service" has "$cf" '^  broker:$'
check "compose: mosquitto service" has "$cf" '^  mosquitto:$'
check "compose: eclipse-mosquitto image" has "$cf" 'image: eclipse-mosquitto:2$'
check "compose: builds the Dockerfile" has "$cf" 'dockerfile: deploy/docker/Dockerfile'
check "compose: data volume" has "$cf" 'simprov-data:/var/lib/simprov'
check "compose: drops capabilities" has "$cf" 'cap_drop: \[ALL\]'
if python3 -c 'import yaml' 2>/dev/null; then
  check "compose: parses as YAML" python3 -c "import sys, yaml; d = yaml.safe_load(open(sys.argv[1])); assert set(d['services']) == {'broker', 'mosquitto'}" "$cf"
fi

unit=$src/deploy/systemd/simprov-broker.service
for key in 'User=simprov' 'StateDirectory=simprov' 'ProtectSystem=strict' \
  'NoNewPrivileges=yes' 'CapabilityBoundingSet=$' 'PrivateTmp=yes' 'UMask=0077'; do
  check "unit: $key" has "$unit" "^$key"
done
check "unit: no DynamicUser (dedicated user)" lacks "$unit" '^DynamicUser='
# The filter's last word on the scheduler calls must allow them: the token
# signer's nonce thread lowers its own priority (SCHED_IDLE, or nice 19).
last_sched=$(grep -E '^SystemCallFilter=.*(@resources|sched_setscheduler)' "$unit" | tail -1)
check "unit: syscall filter allows lowering a thread's priority" \
  test "$last_sched" = "SystemCallFilter=sched_setscheduler setpriority"

# The agent unit refuses an empty SIMPROV_BROKER_CA unless unpinned first
# boot is chosen explicitly: run its ExecStartPre as systemd would ($$ -> $).
agent_unit=$src/deploy/systemd/simprov-agent.service
pre=$(sed -n "s/^ExecStartPre=\/bin\/sh -c '\(.*\)'$/\1/p" "$agent_unit" | sed 's/\$\$/$/g')
check "agent unit: has the broker CA check" test -n "$pre"
check "agent unit: empty CA refused (exit 2)" \
  sh -c 'env -i SIMPROV_BROKER_CA= sh -c "$1"; test $? -eq 2' sh "$pre"
check "agent unit: pinned CA accepted" env -i SIMPROV_BROKER_CA=/etc/simprov/ca.pem sh -c "$pre"
check "agent unit: explicit unpinned first boot accepted" \
  env -i SIMPROV_BROKER_CA= SIMPROV_UNPINNED_FIRST_BOOT=yes sh -c "$pre"
check "agent unit: other values are not a choice" \
  sh -c 'env -i SIMPROV_UNPINNED_FIRST_BOOT=1 sh -c "$1" 2>/dev/null; test $? -eq 2' sh "$pre"
check "sysusers: simprov user" has "$src/deploy/systemd/simprov.sysusers" '^u simprov '
if command -v systemd-analyze >/dev/null; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # verify needs an existing ExecStart binary.
  sed 's#/usr/local/bin/simprov-broker#/bin/true#' "$unit" >"$tmp/simprov-broker.service"
  out=$(systemd-analyze verify "$tmp/simprov-broker.service" 2>&1)
  check "unit: systemd-analyze verify is silent" test -z "$out"
  [[ -z $out ]] || echo "$out"
  sed -e 's#/usr/local/bin/simprov-agent#/bin/true#' \
    -e 's#^EnvironmentFile=.*#EnvironmentFile=-/nonexistent#' "$agent_unit" >"$tmp/simprov-agent.service"
  out=$(systemd-analyze verify "$tmp/simprov-agent.service" 2>&1)
  check "agent unit: systemd-analyze verify is silent" test -z "$out"
  [[ -z $out ]] || echo "$out"
  level=$(systemd-analyze security --offline=yes "$tmp/simprov-broker.service" 2>/dev/null |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  echo "     exposure level: ${level:-?}"
  check "unit: exposure level below 2.0" awk -v l="${level:-99}" 'BEGIN { exit !(l < 2.0) }'
fi
exit $((fails > 0))
