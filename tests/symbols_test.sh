#!/usr/bin/env bash
# The public libraries export only pm_ names, so they link cleanly into other programs, and
# they export every function the header marks PM_API.
# Usage: symbols_test.sh include/probmoe.h libprobmoe.so libprobmoe.a
set -euo pipefail
header=$1 shared=$2 archive=$3
status=0

# Defined dynamic symbols of the shared library. Allowed besides pm_*: symbols that the GNU
# toolchain itself puts into a shared object's dynamic table (older ld exports these):
# _init/_fini (crti.o's entry points) and __bss_start/_edata/_end (section boundaries that
# ld's default script defines). The current Debian toolchain exports none of them.
shared_names=$(nm -D --defined-only "$shared" | awk '{ print $NF }' |
  grep -v -x -E '_init|_fini|__bss_start|_edata|_end' | sort -u)
# Defined global (and weak) symbols of the archive, in POSIX format ("name type value size");
# the lines naming a member ("lib.a[member.o]:") are skipped. No exceptions here: the archive
# holds only the library's own objects.
archive_names=$(nm -g --defined-only -P "$archive" | awk 'NF > 1 { print $1 }' | sort -u)
# The functions the header marks PM_API (the name right before the opening parenthesis).
header_names=$(grep -v '^#' "$header" | grep -o 'PM_API[^(;]*(' |
  sed -E 's/.*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\($/\1/' | sort -u)

check() {  # check LABEL NAMES
  local label=$1 names=$2 bad missing
  bad=$(grep -v '^pm_' <<< "$names" || true)
  if [ -n "$bad" ]; then
    echo "$label exports $(wc -l <<< "$bad") symbol(s) without the pm_ prefix:"
    sed 's/^/  /' <<< "$bad"
    status=1
  fi
  missing=$(comm -23 <(echo "$header_names") <(echo "$names"))
  if [ -n "$missing" ]; then
    echo "$label does not export these PM_API functions of $header:"
    sed 's/^/  /' <<< "$missing"
    status=1
  fi
  echo "$label: $(grep -c . <<< "$names") exported symbols"
}

[ -n "$header_names" ] || { echo "no PM_API declarations found in $header"; exit 1; }
check "$shared" "$shared_names"
check "$archive" "$archive_names"
exit $status
