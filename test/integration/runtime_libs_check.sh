#!/usr/bin/env bash
# Installs the build into a temporary prefix and checks that every shared
# library the installed binaries load (as `ldd` resolves it) belongs to a
# Debian package listed in deploy/debian/runtime-packages.txt, the list the
# container's runtime stage installs. Also checks that every package in the
# shared lists exists in the archive the machine uses.
# Usage: runtime_libs_check.sh SOURCE_DIR BUILD_DIR [EXTRA_PACKAGE...]
# (extra packages: the sanitizer runtimes of an instrumented build).
set -uo pipefail
src=${1:?usage: runtime_libs_check.sh SOURCE_DIR BUILD_DIR [EXTRA_PACKAGE...]}
build=${2:?usage: runtime_libs_check.sh SOURCE_DIR BUILD_DIR [EXTRA_PACKAGE...]}
shift 2
list() { sed 's/#.*//' "$src/deploy/debian/$1" | xargs -n1; }
mapfile -t allowed < <(list runtime-packages.txt)
allowed+=("$@")

prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null || {
  echo "FAIL cmake --install $build"
  exit 1
}

fails=0
bins=("$prefix"/bin/*)
((${#bins[@]} >= 3)) || { echo "FAIL expected the installed binaries in $prefix/bin"; exit 1; }

# Which package owns each library: one dpkg query for all of them. Debian 12
# merges /lib into /usr/lib, and dpkg knows a file under the name its package
# shipped it by, so ask for both names.
declare -A owner
mapfile -t libs < <(for bin in "${bins[@]}"; do
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'
done | sort -u)
names=()
for lib in "${libs[@]}"; do
  real=$(readlink -f "$lib")
  for n in "$lib" "$real" "${lib#/usr}" "/usr${lib#/usr}" "${real#/usr}" "/usr${real#/usr}"; do
    names+=("$n")
  done
done
while IFS= read -r line; do
  pkg=${line%%: *} file=${line#*: }
  pkg=${pkg%%:*}  # drop the architecture
  owner[$file]=$pkg
done < <(dpkg -S "${names[@]}" 2>/dev/null)
pkg_of() {
  local lib=$1 real n
  real=$(readlink -f "$lib")
  for n in "$lib" "$real" "${lib#/usr}" "/usr${lib#/usr}" "${real#/usr}" "/usr${real#/usr}"; do
    [[ -n ${owner[$n]:-} ]] && { echo "${owner[$n]}"; return; }
  done
}

for bin in "${bins[@]}"; do
  name=$(basename "$bin")
  before=$fails
  if ldd "$bin" | grep -q 'not found'; then
    echo "FAIL $name: $(ldd "$bin" | grep 'not found' | xargs)"
    fails=$((fails + 1))
  fi
  while read -r lib; do
    pkg=$(pkg_of "$lib")
    if [[ -z $pkg ]]; then
      echo "FAIL $name loads $lib, which no Debian package owns"
      fails=$((fails + 1))
    elif [[ " ${allowed[*]} " != *" $pkg "* ]]; then
      echo "FAIL $name loads $lib from $pkg, missing in deploy/debian/runtime-packages.txt"
      fails=$((fails + 1))
    fi
  done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}')
  ((fails == before)) && echo "ok   $name"
done

# Every listed package exists in the archive this machine installs from.
mapfile -t known < <(apt-cache pkgnames)
declare -A in_archive
for p in "${known[@]}"; do in_archive[$p]=1; done
for l in build-packages.txt runtime-packages.txt test-packages.txt; do
  while read -r p; do
    [[ -n ${in_archive[$p]:-} ]] || {
      echo "FAIL $l names $p, which the package archive does not have"
      fails=$((fails + 1))
    }
  done < <(list "$l")
done
((fails == 0)) && echo "all installed binaries load only listed runtime packages"
exit $((fails > 0))
