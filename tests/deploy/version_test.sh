#!/usr/bin/env bash
# `iommud --version` and `iommuctl --version` print exactly "<program> <version> (<build type> build)"
# (CMake's project(VERSION) and CMAKE_BUILD_TYPE, passed in by tests/deploy/CMakeLists.txt), exit
# 0, and neither absl's "Debug build (NDEBUG not #defined)" line nor anything else.
# Usage: version_test.sh IOMMUD IOMMUCTL VERSION BUILD_TYPE
set -euo pipefail
iommud="$1" iommuctl="$2" version="$3" build_type="$4"
fail() { echo "FAIL: $*" >&2; exit 1; }
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "not a project version: '$version'"
check() {  # check PROGRAM BINARY
  local out status=0
  out="$("$2" --version 2>&1)" || status=$?
  [ "$status" -eq 0 ] || fail "$1 --version exited with $status: $out"
  [ "$out" = "$1 $version ($build_type build)" ] ||
    fail "$1 --version printed '$out', expected '$1 $version ($build_type build)'"
  echo "ok: $out"
}
check iommud "$iommud"
check iommuctl "$iommuctl"
echo PASS
