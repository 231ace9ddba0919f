#!/usr/bin/env bash
# Checks that #include lines follow docs/architecture.md: which folder may
# include which. The CMake libraries enforce the same at link time; this
# names the offending line. Usage: layering_check.sh SOURCE_DIR
set -euo pipefail
src=${1:?usage: layering_check.sh SOURCE_DIR}
cd "$src"

# folder: the project folders its sources may include (besides itself and
# the generated simprov/v1/*.pb.h).
declare -A allowed=(
  [common]="common"
  [agent]="agent common"
  [agent/sim]="common"
  [agent/keys]="agent/sim common"
  [broker/store]="broker/store common"
  [broker/store/sqlite]="broker/store common"
  [broker/store/postgres]="broker/store common"
  [broker/policy]="broker/store common"
  [broker/keys]="broker/store common"
  [broker/ca]="broker/store common"
  [broker/admin]="broker/ca broker/keys broker/policy broker/store common"
  [broker/ops]="broker/admin broker/keys broker/store common"
  [broker/enrol]="broker/ca broker/keys broker/ops broker/policy broker/store common"
  [broker/registry]="broker/enrol broker/admin broker/ca broker/policy broker/store common"
  [broker/fleet]="broker/registry broker/enrol broker/admin broker/ca broker/policy broker/store common"
  [broker/tokens]="broker/admin broker/ops broker/ca broker/policy broker/store common"
  [broker/cli]="broker/cli common"
)

# The folder a source file belongs to: its longest prefix in `allowed`,
# or "broker" for the program's own files at broker/'s root.
owner() {
  local f=$1 best=""
  for k in "${!allowed[@]}"; do
    [[ $f == "$k/"* && ${#k} -gt ${#best} ]] && best=$k
  done
  [[ -z $best && $f == broker/* ]] && best=broker
  echo "$best"
}

bad=0
while IFS= read -r f; do
  o=$(owner "$f")
  [[ -z $o || $o == broker ]] && continue
  while IFS= read -r inc; do
    target=${inc#*\"}
    target=${target%\"*}
    case $target in
      agent/* | broker/* | common/*) ;;
      *) continue ;;
    esac
    ok=0
    [[ $target == "$o/"* ]] && ok=1
    for a in ${allowed[$o]}; do
      [[ $target == "$a/"* ]] && ok=1
    done
    # A folder's subfolders are its own (broker/store/sqlite is not: it is
    # a backend, and only broker/ may name it).
    if [[ $target == broker/store/sqlite/* && $o != broker/store/sqlite ]]; then
      ok=0
    fi
    if [[ $target == broker/store/postgres/* && $o != broker/store/postgres ]]; then
      ok=0
    fi
    if ((ok == 0)); then
      echo "$f: includes $target, but $o may only use: ${allowed[$o]}"
      bad=1
    fi
  done < <(grep -E '^#include "' "$f" || true)
done < <(git ls-files 'common/*.cc' 'common/*.h' 'agent/*.cc' 'agent/*.h' \
  'broker/*.cc' 'broker/*.h' 2>/dev/null || find common agent broker -name '*.cc' -o -name '*.h')

if ((bad)); then
  echo "layering_check: includes against docs/architecture.md (above)"
  exit 1
fi
echo "layering_check: every include follows docs/architecture.md"
