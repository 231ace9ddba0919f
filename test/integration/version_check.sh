#!/usr/bin/env bash
# Every binary answers --version with its name, the CMake project version and
# (built from git) the commit, on stdout, exit 0; the commit is the source
# tree's when git is available.
# Usage: version_check.sh SOURCE_DIR VERSION BINARY...
set -uo pipefail
src=$1 version=$2
shift 2
fails=0
commit=$(git -C "$src" rev-parse --short=12 HEAD 2>/dev/null)
for bin in "$@"; do
  name=$(basename "$bin")
  out=$("$bin" --version 2>/dev/null)
  rc=$?
  re="^${name} ${version//./\\.}( \\(git [0-9a-f]{12}(-dirty)?\\))?$"
  if ((rc != 0)) || ! [[ $out =~ $re ]]; then
    echo "FAIL $name --version: exit $rc, '$out'"
    fails=$((fails + 1))
  elif [[ -n $commit && $out != *"git $commit"* ]]; then
    echo "FAIL $name --version names another commit than $commit: '$out'"
    fails=$((fails + 1))
  else
    echo "ok   $out"
  fi
done
exit $((fails > 0))
