#!/usr/bin/env bash
# Runs pytest on a test directory from a Bazel sh_test, the counterpart of CMake's
# clients_python_scenarios. The working directory is the workspace's runfiles root, so every path
# argument is relative to it. Usage: pytest_runner.sh IOMMUD_BINARY PYTHONPATH_DIR TEST_DIR
set -euo pipefail
export IOMMUD_BINARY="$PWD/$1"
export PYTHONPATH="$PWD/$2"
export PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 -m pytest -q -p no:cacheprovider "$3"
