#!/bin/sh
# Bazel runner of error_catalogue_test.py: the source root is where the runfile docs/errors.md
# really lives (see tests/docs/BUILD.bazel).
set -eu
errors=$(readlink -f docs/errors.md)
exec /usr/bin/python3 tests/docs/error_catalogue_test.py "$(dirname "$(dirname "$errors")")"
