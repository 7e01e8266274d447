#!/usr/bin/env bash
# Installs longconn into a staging directory (make install DESTDIR=...), then
# builds the same program against it with pkg-config and with CMake (shared
# and static) and runs each: the way users consume a C library.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
prefix=/usr/local
passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

make -C "$root" --no-print-directory install DESTDIR="$stage" PREFIX="$prefix" >"$stage/install.log" 2>&1 || {
    cat "$stage/install.log"
    echo "install-tests: make install failed"
    exit 1
}
lib="$stage$prefix/lib"
if [ -f "$lib/liblongconn.so.0.1.0" ] && [ "$(readlink "$lib/liblongconn.so.0")" = liblongconn.so.0.1.0 ] &&
    readelf -d "$lib/liblongconn.so.0.1.0" | grep -q 'SONAME.*\[liblongconn.so.0\]'; then
    pass "installed_with_soname"
else
    ls -l "$lib"
    fail "installed_with_soname"
fi

# pkg-config, with the staging directory as the sysroot of its paths.
export PKG_CONFIG_PATH="$lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$stage"
if cc -std=c99 -Wall -Wextra -Wpedantic -Werror "$here/consumer.c" -o "$stage/consumer_pc" \
    $(pkg-config --cflags --libs longconn) 2>"$stage/pc.log" &&
    readelf -d "$stage/consumer_pc" | grep -q 'NEEDED.*\[liblongconn.so.0\]' &&
    LD_LIBRARY_PATH="$lib" "$stage/consumer_pc"; then
    pass "pkg_config_consumer"
else
    cat "$stage/pc.log"
    fail "pkg_config_consumer"
fi
# The C++ header installs beside the C one and builds with the same flags.
cat >"$stage/consumer.cpp" <<'CPP'
#include <longconn.hpp>
int main() {
    longconn::client client{longconn::config("tcp://127.0.0.1:9")};
    return client.state() == LC_STATE_IDLE ? 0 : 1;
}
CPP
if ${CXX:-c++} -std=c++17 -Wall -Wextra -Wpedantic -Werror "$stage/consumer.cpp" -o "$stage/consumer_cpp" \
    $(pkg-config --cflags --libs longconn) 2>"$stage/cpp.log" && LD_LIBRARY_PATH="$lib" "$stage/consumer_cpp"; then
    pass "cpp_header_consumer"
else
    cat "$stage/cpp.log"
    fail "cpp_header_consumer"
fi
if cc -std=c99 "$here/consumer.c" -o "$stage/consumer_pc_static" $(pkg-config --cflags longconn) \
    "$lib/liblongconn.a" $(pkg-config --libs-only-other --static longconn) -lpthread -ldl -lm 2>"$stage/pcs.log" &&
    "$stage/consumer_pc_static"; then
    pass "static_consumer"
else
    cat "$stage/pcs.log"
    fail "static_consumer"
fi

# CMake, finding the package under the staged prefix.
if cmake -S "$here" -B "$stage/cmake-build" -DCMAKE_PREFIX_PATH="$stage$prefix" >"$stage/cmake.log" 2>&1 &&
    cmake --build "$stage/cmake-build" >>"$stage/cmake.log" 2>&1 &&
    LD_LIBRARY_PATH="$lib" "$stage/cmake-build/consumer" && "$stage/cmake-build/consumer_static"; then
    pass "cmake_consumer"
else
    cat "$stage/cmake.log"
    fail "cmake_consumer"
fi

# The version file refuses a version this one is not compatible with.
mkdir -p "$stage/too-new"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(p C)\nfind_package(longconn 9.0 CONFIG REQUIRED)\n' >"$stage/too-new/CMakeLists.txt"
if ! cmake -S "$stage/too-new" -B "$stage/too-new/build" -DCMAKE_PREFIX_PATH="$stage$prefix" >/dev/null 2>&1; then
    pass "cmake_version_check"
else
    fail "cmake_version_check"
fi

make -C "$root" --no-print-directory uninstall DESTDIR="$stage" PREFIX="$prefix" >/dev/null
if [ -z "$(find "$stage$prefix" -type f -o -type l)" ]; then pass "uninstall_removes_everything"; else
    find "$stage$prefix" -type f -o -type l
    fail "uninstall_removes_everything"
fi

echo "install-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
