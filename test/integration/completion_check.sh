#!/usr/bin/env bash
# `NAME completion bash|zsh` for each binary: the bash script loads, and
# completes subcommands, their flags and file arguments of valued flags.
# Usage: completion_check.sh BROKER CLI AGENT BENCH
set -uo pipefail
broker=$1 cli=$2 agent=$3 bench=$4
fails=0
# expect BINARY "EXPECTED COMPREPLY" WORDS... (the last word is completed)
expect() {
  local bin=$1 want=$2
  shift 2
  local got
  got=$(
    source <("$bin" completion bash) || exit 1
    fn=$(complete -p "$(basename "$bin")" | awk '{print $(NF-1)}')
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMPREPLY=()
    "$fn"
    echo "${COMPREPLY[*]}"
  )
  if [[ $got == "$want" ]]; then
    echo "ok   $* -> $got"
  else
    echo "FAIL $* -> '$got', expected '$want'"
    fails=$((fails + 1))
  fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/sims.csv"

expect "$cli" "subscribers" simprov sub
expect "$cli" "import" simprov subscribers im
expect "$cli" "--skip-existing" simprov --data-dir /x subscribers import --sk
expect "$cli" "$tmp/sims.csv" simprov subscribers import --json "$tmp/sim"
expect "$cli" "$tmp" simprov --data-dir "$tmp"
expect "$cli" "revoke-cert" simprov admin rev
expect "$agent" "bootstrap" simprov-agent boot
expect "$agent" "--sim" simprov-agent bootstrap --si
expect "$broker" "--data-dir" simprov-broker --data-d
expect "$broker" "restore" simprov-broker res
expect "$bench" "--devices" simprov-bench --devi

for bin in "$broker" "$cli" "$agent" "$bench"; do
  name=$(basename "$bin")
  if [[ $("$bin" completion zsh | head -1) == "#compdef $name" ]]; then
    echo "ok   $name completion zsh"
  else
    echo "FAIL $name completion zsh: no #compdef line"
    fails=$((fails + 1))
  fi
  "$bin" completion fish >/dev/null 2>&1
  rc=$?
  if ((rc == 2)); then echo "ok   $name completion fish: exit 2"; else
    echo "FAIL $name completion fish: exit $rc"
    fails=$((fails + 1))
  fi
done
exit $((fails > 0))
