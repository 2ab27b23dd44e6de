#!/usr/bin/env bash
# The installed library works for a user program: install the build tree into a temporary
# prefix, then build examples/subset_example.c out of tree through pkg-config (shared and
# static) and through find_package(probmoe) (probmoe::probmoe and probmoe::probmoe_static),
# and run each program.
# Usage: install_test.sh BUILD_DIR EXAMPLE.c LIBDIR CC [FLAGS...]
#   LIBDIR is CMAKE_INSTALL_LIBDIR (relative to the prefix); FLAGS go to every compile and
#   link of the user program (the sanitizer build passes -fsanitize=..., which a program
#   linking its instrumented library needs).
set -euo pipefail
build=$1 example=$2 libdir=$3 cc=$4
shift 4
flags=("$@")
expected="m = 0.862454 0.657993 0.342007 0.137546"  # as the example_runs test

work=$(mktemp -d "${TMPDIR:-/tmp}/probmoe-install.XXXXXX")  # unique: ctest runs in parallel
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
lib=$prefix/$libdir
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1 ||
  { cat "$work/install.log"; fail "cmake --install"; }
for file in include/probmoe.h "$libdir/libprobmoe.so" "$libdir/libprobmoe.a" \
            "$libdir/pkgconfig/probmoe.pc" "$libdir/cmake/probmoe/probmoeConfig.cmake" \
            "$libdir/cmake/probmoe/probmoeConfigVersion.cmake"; do
  [ -e "$prefix/$file" ] || fail "the install lacks $file"
done

run() {  # run LABEL COMMAND...: the program must exit 0 and print the expected marginals
  local label=$1 output
  shift
  output=$("$@" 2>&1) || { echo "$output"; fail "$label exited with an error"; }
  grep -qF "$expected" <<< "$output" || { echo "$output"; fail "$label printed no '$expected'"; }
  echo "ok: $label"
}
# A program that must not depend on libprobmoe.so at run time.
not_dynamic() {
  local dynamic
  dynamic=$(readelf -d "$1")
  ! grep -q 'NEEDED.*libprobmoe' <<< "$dynamic" || fail "$1 needs libprobmoe.so"
}

# (a) pkg-config. The example calls logf itself, hence its own -lm.
export PKG_CONFIG_PATH=$lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
read -ra cflags <<< "$(pkg-config --cflags probmoe)"
read -ra libs <<< "$(pkg-config --libs probmoe)"
"$cc" "${flags[@]}" "${cflags[@]}" "$example" -o "$work/pc_shared" "${libs[@]}" -lm ||
  fail "building against the shared library with pkg-config"
# (ldd's output is read whole first: grep -q stops early, and under pipefail the SIGPIPE of
# the writer would fail the test at random)
loaded=$(LD_LIBRARY_PATH=$lib ldd "$work/pc_shared")
grep -qF "$lib/libprobmoe.so" <<< "$loaded" || fail "pc_shared does not load $lib/libprobmoe.so"
run "pkg-config shared" env LD_LIBRARY_PATH="$lib" "$work/pc_shared"

# --static adds Libs.private and Requires.private; -lprobmoe would still pick the .so, so it
# is replaced by the archive's path.
read -ra static_libs <<< "$(pkg-config --static --libs probmoe)"
for i in "${!static_libs[@]}"; do
  [ "${static_libs[$i]}" = -lprobmoe ] && static_libs[$i]=$lib/libprobmoe.a
done
"$cc" "${flags[@]}" "${cflags[@]}" "$example" -o "$work/pc_static" "${static_libs[@]}" -lm ||
  fail "building against the static library with pkg-config --static"
not_dynamic "$work/pc_static"
run "pkg-config static" "$work/pc_static"

# (b) find_package(probmoe) in a separate CMake project.
mkdir "$work/consumer"
cat > "$work/consumer/CMakeLists.txt" << EOF
cmake_minimum_required(VERSION 3.25)
project(probmoe_consumer LANGUAGES C)
find_package(probmoe 0.1 REQUIRED)
if(NOT probmoe_DIR STREQUAL "$lib/cmake/probmoe")
  message(FATAL_ERROR "found probmoe in \${probmoe_DIR}, not in the test's prefix")
endif()
add_executable(cmake_shared "$example")
target_link_libraries(cmake_shared PRIVATE probmoe::probmoe m)
add_executable(cmake_static "$example")
target_link_libraries(cmake_static PRIVATE probmoe::probmoe_static m)
EOF
cmake -S "$work/consumer" -B "$work/consumer/build" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="${flags[*]}" \
  -DCMAKE_EXE_LINKER_FLAGS="${flags[*]}" > "$work/consumer.log" 2>&1 &&
  cmake --build "$work/consumer/build" >> "$work/consumer.log" 2>&1 ||
  { cat "$work/consumer.log"; fail "the find_package(probmoe) project"; }
not_dynamic "$work/consumer/build/cmake_static"
run "find_package shared" env LD_LIBRARY_PATH="$lib" "$work/consumer/build/cmake_shared"
run "find_package static" "$work/consumer/build/cmake_static"
