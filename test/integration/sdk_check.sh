#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds docs/tokens.md's
# example program against the installed SDK twice -- with find_package(simprov
# COMPONENTS token_verifier) and with pkg-config -- and runs both on a real
# token: valid (exit 0, prints the subject first), tampered (exit 1).
# Usage: sdk_check.sh SOURCE_DIR BUILD_DIR JWKS_FILE AUDIENCE TOKEN SUBJECT
#   [EXTRA_FLAGS] (compiler and linker flags, e.g. the sanitizers').
set -euo pipefail
src=$1 build=$2 jwks=$3 audience=$4 token=$5 subject=$6 flags=${7:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null

# The example exactly as docs/tokens.md shows it (the block after each
# "sdk-example:NAME" marker).
extract() {
  awk -v name="$1" '
    $0 ~ "sdk-example:" name { want = 1; next }
    want && /^```/ { if (inside) exit; inside = 1; next }
    inside { print }' "$src/docs/tokens.md"
}
mkdir -p "$work/app"
extract verify_token.cc >"$work/app/verify_token.cc"
extract CMakeLists.txt >"$work/app/CMakeLists.txt"
[[ -s $work/app/verify_token.cc && -s $work/app/CMakeLists.txt ]] ||
  { echo "FAIL docs/tokens.md lacks the sdk-example blocks"; exit 1; }

cmake -S "$work/app" -B "$work/app-build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$work/app-build" >/dev/null
# shellcheck disable=SC2046,SC2086
PKG_CONFIG_PATH=$(dirname "$(find "$work/prefix" -name simprov-token-verifier.pc)") \
  c++ -std=c++17 $flags -o "$work/verify_token_pc" "$work/app/verify_token.cc" \
  $(PKG_CONFIG_PATH=$(dirname "$(find "$work/prefix" -name simprov-token-verifier.pc)") \
    pkg-config --cflags --libs simprov-token-verifier)

tampered="${token%?}A"
[[ $tampered != "$token" ]] || tampered="${token%?}B"
for bin in "$work/app-build/verify_token" "$work/verify_token_pc"; do
  out=$("$bin" "$jwks" "$audience" "$token")
  [[ $out == "$subject "* ]] || { echo "FAIL $bin: '$out'"; exit 1; }
  set +e
  "$bin" "$jwks" "$audience" "$tampered" 2>/dev/null
  rc=$?
  set -e
  ((rc == 1)) || { echo "FAIL $bin accepted a tampered token (exit $rc)"; exit 1; }
  echo "ok   $(basename "$bin")"
done
